"""The range-test suite's problems: 27 small training problems in 6 families.

Every problem is a model factory, an in-memory data set with a fitting part and a validation
part (carved from a training split; no test split is touched), a loss, an optimizer (SGD with
momentum 0.9, Adam or AdamW), a batch size and a number of epochs. Data comes from packages
only, never from a download: scikit-learn's bundled sets and ``make_*`` generators, MNIST-1D
from the ``mnist1d`` package's ``make_dataset`` (through ``lrsearch.tasks.mnist1d``), and the
English text that ships with CPython (``pydoc_data.topics``).

Families (``Problem.family``; the held-out calibration leaves one out at a time):

- ``mlp``: tabular MLPs with cross-entropy, MSE and BCE;
- ``cnn``: convolutional nets on images (digits as 8x8) and signals (MNIST-1D), with and
  without BatchNorm;
- ``resnet``: small residual CNNs (BatchNorm inside the blocks);
- ``rnn``: GRU and LSTM sequence models (classification and a character language model);
- ``transformer``: small pre-LayerNorm transformers (a character LM and sequence classifiers);
- ``autoencoder``: MLP and convolutional autoencoders (MSE reconstruction).

Each problem is small enough that one fixed-budget run takes seconds on one CPU core.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from sklearn.datasets import (
    load_breast_cancer,
    load_diabetes,
    make_classification,
    make_friedman1,
    make_moons,
)
from sklearn.model_selection import train_test_split
from torch import nn

from lrsearch.tasks import digits, mnist1d

VAL_FRACTION = 0.2


class Data(NamedTuple):
    """A problem's in-memory data: the part to train on and the validation part."""

    x_fit: torch.Tensor
    y_fit: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor


@dataclasses.dataclass(frozen=True)
class Problem:
    """One problem: what to train, on what, how and for how long.

    ``grid`` holds the ends of its constant-LR grid (log-spaced; widened by the suite when the
    best lands on an end).
    """

    name: str
    family: str
    make_model: Callable[[], nn.Module]
    load: Callable[[], Data]
    make_loss: Callable[[], nn.Module]
    optimizer_name: str  # "sgd" (momentum 0.9), "adam" or "adamw" (weight decay 0.01)
    batch_size: int
    epochs: int
    grid: tuple[float, float]

    def optimizer(self, model: nn.Module, lr: float) -> torch.optim.Optimizer:
        """The problem's optimizer at ``lr``."""
        if self.optimizer_name == "sgd":
            return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        if self.optimizer_name == "adam":
            return torch.optim.Adam(model.parameters(), lr=lr)
        if self.optimizer_name == "adamw":
            return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
        raise ValueError(f"optimizer_name must be sgd, adam or adamw; got {self.optimizer_name}")

    def steps_per_epoch(self, data: Data) -> int:
        """Full batches per epoch (the last partial batch is dropped)."""
        return len(data.y_fit) // self.batch_size

    def total_steps(self, data: Data) -> int:
        """Optimizer steps of one fixed-budget run."""
        return self.epochs * self.steps_per_epoch(data)


# -- data ------------------------------------------------------------------------------------


def _carve(x: torch.Tensor, y: torch.Tensor, *, stratify: bool) -> Data:
    """Split a training split into a fitting part and a validation part (fixed seed)."""
    idx = np.arange(len(y))
    fit, val = train_test_split(
        idx, test_size=VAL_FRACTION, random_state=0, stratify=y.numpy() if stratify else None
    )
    fit_t, val_t = torch.from_numpy(np.sort(fit)), torch.from_numpy(np.sort(val))
    return Data(x[fit_t], y[fit_t], x[val_t], y[val_t])


def _standardise(x: np.ndarray) -> np.ndarray:
    return ((x - x.mean(0)) / (x.std(0) + 1e-8)).astype(np.float32)


@functools.cache
def digits_flat() -> Data:
    """The digits' training split as 64 features in [0, 1]; labels 0..9."""
    split = digits.load_data()
    return _carve(split.x_train, split.y_train, stratify=True)


@functools.cache
def digits_images() -> Data:
    """The digits as 1x8x8 images."""
    d = digits_flat()
    return Data(d.x_fit.view(-1, 1, 8, 8), d.y_fit, d.x_val.view(-1, 1, 8, 8), d.y_val)


@functools.cache
def digits_rows() -> Data:
    """The digits as sequences of 8 rows of 8 pixels."""
    d = digits_flat()
    return Data(d.x_fit.view(-1, 8, 8), d.y_fit, d.x_val.view(-1, 8, 8), d.y_val)


@functools.cache
def digits_autoencode() -> Data:
    """The digits as their own targets."""
    d = digits_flat()
    return Data(d.x_fit, d.x_fit, d.x_val, d.x_val)


@functools.cache
def digits_images_autoencode() -> Data:
    """The digits as 1x8x8 images, their own targets."""
    d = digits_images()
    return Data(d.x_fit, d.x_fit, d.x_val, d.x_val)


@functools.cache
def mnist1d_channels() -> Data:
    """MNIST-1D's training split as (N, 1, 40) signals."""
    split = mnist1d.load_data()
    return _carve(split.x_train, split.y_train, stratify=True)


@functools.cache
def mnist1d_sequences() -> Data:
    """MNIST-1D as 40 time steps of one feature."""
    d = mnist1d_channels()
    return Data(d.x_fit.transpose(1, 2).contiguous(), d.y_fit, d.x_val.transpose(1, 2), d.y_val)


@functools.cache
def mnist1d_patches() -> Data:
    """MNIST-1D as 10 tokens of 4 samples each."""
    d = mnist1d_channels()
    return Data(d.x_fit.view(-1, 10, 4), d.y_fit, d.x_val.view(-1, 10, 4), d.y_val)


@functools.cache
def mnist1d_autoencode() -> Data:
    """MNIST-1D's signals (flattened to 40 features) as their own targets."""
    d = mnist1d_channels()
    fit, val = d.x_fit.flatten(1), d.x_val.flatten(1)
    return Data(fit, fit, val, val)


@functools.cache
def cancer() -> Data:
    """Breast cancer (bundled), 30 standardised features; float targets for BCE."""
    bunch = load_breast_cancer()
    x = torch.from_numpy(_standardise(bunch.data))
    y = torch.from_numpy(bunch.target.astype(np.float32))[:, None]
    return _carve(x, y, stratify=False)


@functools.cache
def cancer_autoencode() -> Data:
    """Breast cancer's standardised features as their own targets."""
    d = cancer()
    return Data(d.x_fit, d.x_fit, d.x_val, d.x_val)


@functools.cache
def moons() -> Data:
    """``make_moons``: 1000 points with noise 0.3 (the classes overlap: the loss has a floor)."""
    x, y = make_moons(n_samples=1000, noise=0.3, random_state=0)
    return _carve(
        torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.int64)), stratify=True
    )


@functools.cache
def diabetes() -> Data:
    """Diabetes (bundled): 10 features, a standardised target for MSE."""
    bunch = load_diabetes()
    y = bunch.target.astype(np.float32)
    y = (y - y.mean()) / y.std()
    x = torch.from_numpy(_standardise(bunch.data))
    return _carve(x, torch.from_numpy(y)[:, None], stratify=False)


@functools.cache
def friedman() -> Data:
    """``make_friedman1``: 2000 x 10, noise 1, a standardised target for MSE."""
    x, y = make_friedman1(n_samples=2000, n_features=10, noise=1.0, random_state=0)
    y = (y - y.mean()) / y.std()
    return _carve(
        torch.from_numpy(x.astype(np.float32)),
        torch.from_numpy(y.astype(np.float32))[:, None],
        stratify=False,
    )


@functools.cache
def classification() -> Data:
    """``make_classification``: 3000 x 20, 4 classes, 10 informative features."""
    x, y = make_classification(
        n_samples=3000,
        n_features=20,
        n_informative=10,
        n_classes=4,
        n_clusters_per_class=2,
        flip_y=0.05,
        random_state=0,
    )
    return _carve(
        torch.from_numpy(_standardise(x)), torch.from_numpy(y.astype(np.int64)), stratify=True
    )


@functools.cache
def teacher_regression() -> Data:
    """A random tanh teacher network plus noise (a tenth of the variance): 2000 x 20."""
    rng = np.random.default_rng(20240601)
    n, d_in, d_hidden = 2000, 20, 32
    x = rng.standard_normal((n, d_in))
    w1 = rng.standard_normal((d_in, d_hidden)) * 2.0 / math.sqrt(d_in)
    w2 = rng.standard_normal((d_hidden, 1)) / math.sqrt(d_hidden)
    signal = np.tanh(x @ w1) @ w2
    signal /= signal.std()
    y = signal + math.sqrt(0.1 / 0.9) * rng.standard_normal((n, 1))
    y = (y - y.mean()) / y.std()
    return _carve(
        torch.from_numpy(x.astype(np.float32)),
        torch.from_numpy(y.astype(np.float32)),
        stratify=False,
    )


CONTEXT = 32
_VOCAB = 96  # printable ASCII 32..126, newline, and one bucket for everything else


def _encode(text: str) -> np.ndarray:
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    out = np.where((codes >= 32) & (codes <= 126), codes - 31, _VOCAB - 1)
    out[codes == 10] = 0
    return out


@functools.cache
def pydoc_text() -> Data:
    """Next-character windows of the interactive help's topics (``pydoc_data.topics``).

    The topics are split by document (every fifth, in sorted order, is validation), and
    4096 fitting windows and 512 validation windows of 32 characters are drawn at fixed
    positions.
    """
    from pydoc_data.topics import topics

    names = sorted(topics)
    fit_text = "\n".join(topics[k] for i, k in enumerate(names) if i % 5)
    val_text = "\n".join(topics[k] for i, k in enumerate(names) if not i % 5)
    rng = np.random.default_rng(0)

    def windows(text: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        codes = _encode(text)
        starts = rng.integers(0, len(codes) - CONTEXT - 1, n)
        block = np.stack([codes[s : s + CONTEXT + 1] for s in starts])
        return torch.from_numpy(block[:, :-1].copy()), torch.from_numpy(block[:, 1:].copy())

    x_fit, y_fit = windows(fit_text, 4096)
    x_val, y_val = windows(val_text, 512)
    return Data(x_fit, y_fit, x_val, y_val)


# -- models ----------------------------------------------------------------------------------


def mlp(sizes: tuple[int, ...]) -> Callable[[], nn.Module]:
    """An MLP factory: Linear-ReLU between the given widths, no activation at the end."""

    def make() -> nn.Module:
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(sizes[:-1]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(sizes[-2], sizes[-1]))
        return nn.Sequential(*layers)

    make.__qualname__ = f"mlp{sizes}"
    return make


def digits_cnn() -> nn.Module:
    """Conv2d 1->16->32 (stride 2) with ReLU, no BatchNorm, on 8x8 digits."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 10),
    )


def digits_bn_cnn() -> nn.Module:
    """The same CNN with BatchNorm2d after each convolution."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 10),
    )


def mnist1d_bn_cnn() -> nn.Module:
    """MNIST-1D's paper CNN with BatchNorm1d after each convolution."""
    return nn.Sequential(
        nn.Conv1d(1, 25, 5, stride=2, padding=1),
        nn.BatchNorm1d(25),
        nn.ReLU(),
        nn.Conv1d(25, 25, 3, stride=2, padding=1),
        nn.BatchNorm1d(25),
        nn.ReLU(),
        nn.Conv1d(25, 25, 3, stride=2, padding=1),
        nn.BatchNorm1d(25),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(125, 10),
    )


class _Block(nn.Module):
    """A basic residual block: two 3-wide convolutions with BatchNorm, identity shortcut."""

    def __init__(self, conv: type[nn.Conv1d] | type[nn.Conv2d], channels: int) -> None:
        super().__init__()
        norm = nn.BatchNorm2d if conv is nn.Conv2d else nn.BatchNorm1d
        self.body = nn.Sequential(
            conv(channels, channels, 3, padding=1, bias=False),
            norm(channels),
            nn.ReLU(),
            conv(channels, channels, 3, padding=1, bias=False),
            norm(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.body(x))


def digits_resnet() -> nn.Module:
    """A small ResNet on 8x8 digits: stem, two residual blocks (one after a stride-2 conv)."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        _Block(nn.Conv2d, 16),
        nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        _Block(nn.Conv2d, 32),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )


def mnist1d_resnet() -> nn.Module:
    """A small 1-D ResNet on MNIST-1D: stem (stride 2), two blocks around a stride-2 conv."""
    return nn.Sequential(
        nn.Conv1d(1, 24, 5, stride=2, padding=2, bias=False),
        nn.BatchNorm1d(24),
        nn.ReLU(),
        _Block(nn.Conv1d, 24),
        nn.Conv1d(24, 32, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm1d(32),
        nn.ReLU(),
        _Block(nn.Conv1d, 32),
        nn.AdaptiveAvgPool1d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )


class RNNClassifier(nn.Module):
    """A one-layer GRU or LSTM over the sequence; a linear head on its last hidden state."""

    def __init__(self, cell: str, n_in: int, hidden: int, n_out: int = 10) -> None:
        super().__init__()
        self.rnn: nn.GRU | nn.LSTM = (nn.GRU if cell == "gru" else nn.LSTM)(
            n_in, hidden, batch_first=True
        )
        self.head = nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


def rnn(cell: str, n_in: int, hidden: int) -> Callable[[], nn.Module]:
    """A factory of :class:`RNNClassifier`."""

    def make() -> nn.Module:
        return RNNClassifier(cell, n_in, hidden)

    make.__qualname__ = f"rnn({cell}, {n_in}, {hidden})"
    return make


class CharLSTM(nn.Module):
    """Embedding 32 -> LSTM 96 -> logits over the 96 characters, at every position."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(_VOCAB, 32)
        self.lstm = nn.LSTM(32, 96, batch_first=True)
        self.head = nn.Linear(96, _VOCAB)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embed(x))
        return self.head(out)


class Transformer(nn.Module):
    """A small pre-LayerNorm transformer encoder with learned positions.

    ``causal``: a decoder-only character LM (logits at every position); else a sequence
    classifier on the mean of the tokens.
    """

    def __init__(
        self, n_in: int, n_tokens: int, n_out: int, *, causal: bool, d: int = 32, layers: int = 2
    ) -> None:
        super().__init__()
        self.causal = causal
        self.embed: nn.Module = nn.Embedding(n_in, d) if causal else nn.Linear(n_in, d)
        self.pos = nn.Parameter(torch.randn(1, n_tokens, d) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d, nhead=4, dim_feedforward=2 * d, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, n_out)
        mask = torch.triu(torch.full((n_tokens, n_tokens), float("-inf")), diagonal=1)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x) + self.pos[:, : x.shape[1]]
        if self.causal:
            h = self.encoder(h, mask=self.mask, is_causal=True)
            return self.head(self.norm(h))
        return self.head(self.norm(self.encoder(h).mean(1)))


def char_transformer() -> nn.Module:
    """A 2-layer decoder-only character LM, d=32, context 32."""
    return Transformer(_VOCAB, CONTEXT, _VOCAB, causal=True)


def digits_transformer() -> nn.Module:
    """A 2-layer transformer over the digits' 8 rows."""
    return Transformer(8, 8, 10, causal=False)


def mnist1d_transformer() -> nn.Module:
    """A 2-layer transformer over MNIST-1D's 10 patches."""
    return Transformer(4, 10, 10, causal=False)


def conv_autoencoder() -> nn.Module:
    """A convolutional autoencoder on 8x8 digits (8x8 -> 4x4x2 -> 8x8: a 32-number code)."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 2, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.ConvTranspose2d(2, 16, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 1, 3, padding=1),
    )


class SeqCrossEntropy(nn.Module):
    """Cross-entropy over every position of (N, T, V) logits and (N, T) targets."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten())


# -- the suite -------------------------------------------------------------------------------

SGD_GRID = (3e-4, 3.0)
ADAM_GRID = (1e-5, 0.1)


def _p(
    name: str,
    family: str,
    model: Callable[[], nn.Module],
    load: Callable[[], Data],
    loss: Callable[[], nn.Module],
    opt: str,
    batch: int,
    epochs: int,
) -> Problem:
    grid = SGD_GRID if opt == "sgd" else ADAM_GRID
    return Problem(name, family, model, load, loss, opt, batch, epochs, grid)


CE, MSE, BCE = nn.CrossEntropyLoss, nn.MSELoss, nn.BCEWithLogitsLoss

PROBLEMS: dict[str, Problem] = {
    p.name: p
    for p in [
        # tabular MLPs
        _p("digits-mlp", "mlp", digits.make_model, digits_flat, CE, "sgd", 64, 30),
        _p("cancer-bce", "mlp", mlp((30, 64, 1)), cancer, BCE, "adam", 16, 30),
        _p("teacher-mse", "mlp", mlp((20, 64, 64, 1)), teacher_regression, MSE, "sgd", 64, 80),
        _p("friedman-mse", "mlp", mlp((10, 64, 64, 1)), friedman, MSE, "adamw", 128, 50),
        _p("moons-ce", "mlp", mlp((2, 32, 32, 2)), moons, CE, "sgd", 16, 20),
        _p("diabetes-mse", "mlp", mlp((10, 32, 1)), diabetes, MSE, "adam", 32, 50),
        _p("classif-ce", "mlp", mlp((20, 128, 128, 4)), classification, CE, "adamw", 256, 50),
        # CNNs with and without BatchNorm
        _p("mnist1d-cnn", "cnn", mnist1d.make_model, mnist1d_channels, CE, "sgd", 100, 25),
        _p("digits-bn-cnn", "cnn", digits_bn_cnn, digits_images, CE, "sgd", 64, 15),
        _p("digits-cnn", "cnn", digits_cnn, digits_images, CE, "adam", 32, 10),
        _p("mnist1d-bn-cnn", "cnn", mnist1d_bn_cnn, mnist1d_channels, CE, "adamw", 128, 20),
        # residual CNNs
        _p("digits-resnet", "resnet", digits_resnet, digits_images, CE, "sgd", 64, 10),
        _p("mnist1d-resnet", "resnet", mnist1d_resnet, mnist1d_channels, CE, "adam", 128, 10),
        _p("digits-resnet-w", "resnet", digits_resnet, digits_images, CE, "adamw", 256, 30),
        _p("mnist1d-resnet-s", "resnet", mnist1d_resnet, mnist1d_channels, CE, "sgd", 32, 5),
        # GRU / LSTM
        _p("mnist1d-gru", "rnn", rnn("gru", 1, 32), mnist1d_sequences, CE, "sgd", 100, 15),
        _p("mnist1d-lstm", "rnn", rnn("lstm", 1, 32), mnist1d_sequences, CE, "adam", 64, 10),
        _p("digits-gru", "rnn", rnn("gru", 8, 48), digits_rows, CE, "adamw", 32, 20),
        _p("char-lstm", "rnn", CharLSTM, pydoc_text, SeqCrossEntropy, "adam", 32, 3),
        # transformers
        _p(
            "char-gpt",
            "transformer",
            char_transformer,
            pydoc_text,
            SeqCrossEntropy,
            "adamw",
            32,
            3,
        ),
        _p("digits-vit", "transformer", digits_transformer, digits_rows, CE, "adam", 64, 20),
        _p(
            "mnist1d-vit",
            "transformer",
            mnist1d_transformer,
            mnist1d_patches,
            CE,
            "adamw",
            128,
            12,
        ),
        _p("digits-vit-sgd", "transformer", digits_transformer, digits_rows, CE, "sgd", 16, 10),
        # autoencoders
        _p(
            "digits-ae",
            "autoencoder",
            mlp((64, 32, 8, 32, 64)),
            digits_autoencode,
            MSE,
            "adam",
            64,
            30,
        ),
        _p(
            "mnist1d-ae",
            "autoencoder",
            mlp((40, 64, 10, 64, 40)),
            mnist1d_autoencode,
            MSE,
            "sgd",
            32,
            20,
        ),
        _p(
            "cancer-ae",
            "autoencoder",
            mlp((30, 16, 4, 16, 30)),
            cancer_autoencode,
            MSE,
            "adamw",
            16,
            40,
        ),
        _p(
            "digits-conv-ae",
            "autoencoder",
            conv_autoencoder,
            digits_images_autoencode,
            MSE,
            "sgd",
            128,
            40,
        ),
    ]
}
FAMILIES: tuple[str, ...] = tuple(dict.fromkeys(p.family for p in PROBLEMS.values()))
