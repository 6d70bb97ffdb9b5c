"""The ``charlm`` task: next-character prediction on CPython's own help text, a small transformer.

The text is ``pydoc_data.topics``, the pages of Python's interactive ``help()`` (79 documents,
about 465,000 characters in CPython 3.11) that ship with every CPython, so loading needs no
network. The split is by document: a topic is held out for the test part when the CRC-32 of its
name is divisible by :data:`TEST_SHARE` (15 topics, about a fifth of the text, in 3.11), so no
test page was seen in training, and a topic keeps its side whatever other topics a Python version
adds. Some topics repeat others' text (a section inside its chapter: ``customization`` is part of
``specialnames``), so a test window that occurs verbatim in a training document is left out:
the test text is unseen. The text differs a little between Python versions, and so do the
numbers it gives.

Characters map to a fixed vocabulary that does not depend on the split: newline and printable
ASCII, every other character (curly quotes, dashes, a few hundred in all) to one placeholder id.
Examples are windows of :data:`CONTEXT` characters ``x`` and the characters that follow each
position ``y`` (``x`` shifted by one); the model predicts ``y`` at every position, and the loss
and the metric are the cross-entropy over all positions, in nats per character.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from lrsearch._validation import check_positive_int
from lrsearch.exceptions import InvalidParameterError
from lrsearch.tasks._task import Task, adamw
from lrsearch.tasks.data import Split

__all__ = [
    "CONTEXT",
    "TEST_SHARE",
    "UNKNOWN",
    "VOCAB",
    "VOCAB_SIZE",
    "CharTransformer",
    "encode",
    "load_data",
    "make_model",
    "next_char_loss",
    "split_topics",
    "task",
    "train_documents",
]

#: Characters the model sees at once (and predicts the next of, at every position).
CONTEXT = 64
#: The characters with ids of their own: newline, then printable ASCII (space to tilde).
VOCAB = "\n" + "".join(chr(c) for c in range(32, 127))
#: The id of every character outside :data:`VOCAB`.
UNKNOWN = len(VOCAB)
VOCAB_SIZE = len(VOCAB) + 1
#: A topic is a test document when the CRC-32 of its name is divisible by this.
TEST_SHARE = 5

_N_TRAIN = 1536  # training windows, spread evenly over the training documents
_N_TEST = 256  # test windows, likewise over the test documents
_WIDTH = 64
_HEADS = 4
_LAYERS = 2

_IDS = {c: i for i, c in enumerate(VOCAB)}


def encode(text: str) -> torch.Tensor:
    """Character ids of ``text``: its position in :data:`VOCAB`, else :data:`UNKNOWN`.

    Args:
        text: Any string.

    Returns:
        An int64 tensor of ``len(text)`` ids in ``0..VOCAB_SIZE - 1``.

    Example:
        >>> encode("a\\n\u2019").tolist() == [VOCAB.index("a"), 0, UNKNOWN]
        True
    """
    return torch.tensor([_IDS.get(c, UNKNOWN) for c in text], dtype=torch.int64)


def split_topics() -> tuple[list[str], list[str]]:
    """The names of the training and the test documents of ``pydoc_data.topics``, sorted.

    Returns:
        ``(train, test)``: every topic is in exactly one; ``test`` holds the topics whose
        name's CRC-32 is divisible by :data:`TEST_SHARE`.

    Example:
        >>> train, test = split_topics()
        >>> len(train) > len(test) > 0, set(train).isdisjoint(test)
        (True, True)
    """
    # Imported when asked for: half a megabyte of text that only this task reads.
    from pydoc_data.topics import topics

    test = sorted(name for name in topics if zlib.crc32(name.encode()) % TEST_SHARE == 0)
    train = sorted(set(topics) - set(test))
    return train, test


def _windows(
    docs: list[str], n: int, context: int, *, unseen_in: Iterable[str] = ()
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """``n`` windows (inputs, next characters, the index of the document each comes from)
    spread evenly over the documents' windows.

    Windows never cross from one document into the next; a document's windows do not overlap.
    A window whose text occurs anywhere in ``unseen_in`` is not a candidate.
    """
    span = context + 1  # a window's inputs and the character after its last one
    seen = {doc[i : i + span] for doc in unseen_in for i in range(len(doc) - context)}
    starts = [
        (d, s)
        for d, doc in enumerate(docs)
        for s in range(0, len(doc) - context, context)
        if doc[s : s + span] not in seen
    ]
    if n > len(starts):
        raise InvalidParameterError(
            f"asked for {n} windows of {context} characters; the documents hold {len(starts)}"
        )
    picked = [starts[i] for i in torch.linspace(0, len(starts) - 1, n).round().long().tolist()]
    chunks = torch.stack([encode(docs[d][s : s + span]) for d, s in picked])
    return chunks[:, :-1].contiguous(), chunks[:, 1:].contiguous(), [d for d, _ in picked]


def load_data(*, n_train: int = _N_TRAIN, n_test: int = _N_TEST, context: int = CONTEXT) -> Split:
    """The training and test windows: the same call gives the same tensors.

    Args:
        n_train: Windows from the training documents, spread evenly over all of them.
        n_test: Windows from the test documents, likewise, among those whose text occurs in no
            training document.
        context: Characters per window.

    Returns:
        A :class:`~lrsearch.tasks.Split` of int64 tensors of shape ``(n, context)``: ``x``
        holds character ids, ``y`` at each position the id of the character after it.

    Raises:
        InvalidParameterError: A count that is not a positive integer, or more windows than
            the documents hold.

    Example:
        >>> split = load_data(n_train=8, n_test=4)
        >>> split.x_train.shape, split.y_test.shape, split.x_train.dtype
        (torch.Size([8, 64]), torch.Size([4, 64]), torch.int64)
    """
    n_train = check_positive_int("n_train", n_train)
    n_test = check_positive_int("n_test", n_test)
    context = check_positive_int("context", context)
    from pydoc_data.topics import topics

    train, test = ([topics[name] for name in names] for names in split_topics())
    x_train, y_train, _ = _windows(train, n_train, context)
    x_test, y_test, _ = _windows(test, n_test, context, unseen_in=train)
    return Split(x_train, y_train, x_test, y_test)


def train_documents(*, n_train: int = _N_TRAIN, context: int = CONTEXT) -> np.ndarray:
    """The training document (its index among the training topics) of each training window of
    :func:`load_data`: the task's ``groups``, so validation and CV hold out whole topics, as
    the test set does.

    Example:
        >>> docs = train_documents(n_train=8)
        >>> len(docs), bool((np.diff(docs) >= 0).all())
        (8, True)
    """
    n_train = check_positive_int("n_train", n_train)
    context = check_positive_int("context", context)
    from pydoc_data.topics import topics

    train = [topics[name] for name in split_topics()[0]]
    return np.asarray(_windows(train, n_train, context)[2], dtype=np.int64)


class CharTransformer(nn.Module):
    """A decoder-only transformer over characters: pre-LayerNorm blocks with causal attention.

    Token and learned position embeddings, ``layers`` of torch's ``TransformerEncoderLayer``
    (``norm_first=True``, GELU, no dropout) under a causal mask, a final LayerNorm and a linear
    read-out to logits over the vocabulary.

    Args:
        vocab_size: Number of character ids.
        context: The longest input it takes (positions it has embeddings for).
        width: Model width (``d_model``).
        heads: Attention heads.
        layers: Transformer blocks.

    Example:
        >>> import torch
        >>> model = CharTransformer(vocab_size=10, context=8, width=16, heads=2, layers=1)
        >>> model(torch.zeros(3, 8, dtype=torch.long)).shape
        torch.Size([3, 8, 10])
    """

    def __init__(
        self,
        vocab_size: int = VOCAB_SIZE,
        context: int = CONTEXT,
        width: int = _WIDTH,
        heads: int = _HEADS,
        layers: int = _LAYERS,
    ) -> None:
        super().__init__()
        self.context = context
        self.tokens = nn.Embedding(vocab_size, width)
        self.positions = nn.Embedding(context, width)
        block = nn.TransformerEncoderLayer(
            width,
            heads,
            dim_feedforward=4 * width,
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        # enable_nested_tensor only serves padding masks, which a causal LM has none of.
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(N, T, vocab_size)`` for character ids ``x`` of shape ``(N, T)``;
        position ``t`` sees ``x[:, : t + 1]`` only."""
        length = x.shape[1]
        if length > self.context:
            raise InvalidParameterError(
                f"inputs must be at most {self.context} characters long; got {length}"
            )
        h = self.tokens(x) + self.positions(torch.arange(length, device=x.device))
        mask = nn.Transformer.generate_square_subsequent_mask(length, device=x.device)
        return self.head(self.norm(self.blocks(h, mask=mask, is_causal=True)))


def make_model() -> nn.Module:
    """A freshly initialised :class:`CharTransformer` of the task's size.

    Two blocks of width 64 with 4 heads over a context of 64 characters (about 117,000
    parameters). Initialisation draws from torch's global RNG.

    Returns:
        The model: character ids ``(N, T)`` in, next-character logits ``(N, T, VOCAB_SIZE)``
        out.

    Example:
        >>> import torch
        >>> make_model()(torch.zeros(2, CONTEXT, dtype=torch.long)).shape
        torch.Size([2, 64, 97])
    """
    return CharTransformer()


def next_char_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over every position, in nats per character.

    Args:
        logits: ``(N, T, V)`` next-character logits.
        targets: ``(N, T)`` the next characters' ids.

    Returns:
        The scalar loss: ``cross_entropy`` over the flattened ``(N * T, V)`` logits.

    Example:
        >>> import math, torch
        >>> loss = next_char_loss(torch.zeros(2, 3, 4), torch.zeros(2, 3, dtype=torch.long))
        >>> math.isclose(float(loss), math.log(4), rel_tol=1e-6)
        True
    """
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def task() -> Task:
    """Next-character prediction, the transformer, AdamW, 8 epochs of batch 16 (768 steps).

    Returns:
        A :class:`~lrsearch.tasks.Task` with 1536 training and 256 held-out test windows of 64
        characters; the loss and the metric are the test loss in nats per character (to
        minimize).

    Example:
        >>> t = task()
        >>> t.name, t.n_train, t.metric_name, t.direction, t.stratify
        ('charlm', 1536, 'loss', 'minimize', False)
    """
    return Task.from_split(
        load_data(),
        make_model,
        loss=next_char_loss,
        metric="loss",
        make_optimizer=adamw(),
        groups=train_documents(),
        batch_size=16,
        epochs=8,
        name="charlm",
    )
