"""The unseen-problem benchmark's problems: 14 small lrsearch tasks nothing was fitted on.

**These problems are kept out of every calibration** (the range test's suggestion rule, the
confidence rule, any default of lrsearch) **and must stay so.** They judge whole studies on
problems lrsearch has never been tuned against; a rule or default chosen while looking at them
would turn this benchmark into a training set. None of them reuses the range-test suite's data
(``benchmarks/range_test/problems.py``: breast cancer, diabetes, ``make_classification``,
``make_friedman1``, ``make_moons``, the digits, MNIST-1D, ``pydoc_data``'s text).

Data comes from packages only, never from a download: scikit-learn's bundled sets (wine,
iris) and generators (``make_circles``, ``make_blobs``, ``make_regression``,
``make_friedman2``/``3``, ``make_swiss_roll``), and synthetic tensors drawn from seeded NumPy
generators (noisy images, waveforms, sequences). Every problem is a fixed train/test split;
features (and regression targets) are standardised with the training part's statistics.

Families: BatchNorm CNNs (2-D and 1-D), a GRU, an LSTM, a small transformer, tabular MLPs (with
dropout), MSE regressions (two of them small and well conditioned, where the best LR is high),
tiny data with fewer than 100 optimizer steps in all; SGD with momentum (plain SGD once) and
AdamW. One whole training run of any of them takes about a second or less of one CPU core.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from sklearn.datasets import (
    load_iris,
    load_wine,
    make_blobs,
    make_circles,
    make_friedman2,
    make_friedman3,
    make_regression,
    make_swiss_roll,
)
from sklearn.model_selection import train_test_split
from torch import nn

from lrsearch import Task, load_task
from lrsearch.tasks import OptimizerFactory, adamw, sgd, steps_per_epoch

__all__ = ["PROBLEMS", "Problem", "Split", "task_named"]


class Split(NamedTuple):
    """A problem's data: the training part (all a study sees) and the held-out test part."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


@dataclasses.dataclass(frozen=True)
class Problem:
    """One unseen problem: a name, what it is in words, and how to build its task.

    Attributes:
        name: The problem's name (also the task's ``name``).
        model: The model in words.
        data: The data in words.
        build: Returns the :class:`lrsearch.Task` (data loaded once per process).
    """

    name: str
    model: str
    data: str
    build: Callable[[], Task]

    def task(self) -> Task:
        """The problem's task."""
        return self.build()

    def steps(self) -> int:
        """Optimizer steps of one whole training run on all of ``train``."""
        task = self.task()
        return task.epochs * steps_per_epoch(task.n_train, task.batch_size)

    def optimizer(self) -> str:
        """The task's optimizer factory as it names itself, e.g. ``sgd(momentum=0.9, ...)``."""
        return str(getattr(self.task().make_optimizer, "__qualname__", "?"))

    def optimizer_words(self) -> str:
        """The optimizer, short: ``SGD`` (momentum 0.9), ``SGD, no momentum``, ``AdamW``."""
        name = self.optimizer()
        if name.startswith("adamw"):
            return "AdamW"
        return "SGD, no momentum" if "momentum=0.0" in name else "SGD"


# -- data ------------------------------------------------------------------------------------


def _tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if np.issubdtype(y.dtype, np.integer):
        return xt, torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))
    return xt, torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32).reshape(len(y), -1))


def _split(
    x: np.ndarray,
    y: np.ndarray,
    *,
    test_size: float | int,
    classify: bool,
    scale_x: bool = True,
    scale_y: bool = False,
) -> Split:
    """A fixed split (stratified for classes), standardised with the training part's numbers."""
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=test_size, random_state=0, stratify=y if classify else None
    )
    if scale_x:
        axes = tuple(range(x_tr.ndim - 1)) if x_tr.ndim > 2 else (0,)
        mean, std = x_tr.mean(axis=axes), x_tr.std(axis=axes) + 1e-8
        x_tr, x_te = (x_tr - mean) / std, (x_te - mean) / std
    if scale_y:
        mean, std = y_tr.mean(), y_tr.std()
        y_tr, y_te = (y_tr - mean) / std, (y_te - mean) / std
    return Split(*_tensors(x_tr, y_tr), *_tensors(x_te, y_te))


NOISE = 1.2


@functools.cache
def noisy_images() -> Split:
    """1x16x16 images of 4 faint strokes (a horizontal bar, a vertical bar, a diagonal, a
    ring), each shifted by up to 3 pixels, under Gaussian noise of 1.2 times their intensity
    (800 training images, 800 test images)."""
    rng = np.random.default_rng(1601)
    size, n = 16, 1600
    yy, xx = np.mgrid[:size, :size]
    c = size / 2 - 0.5
    templates = np.stack(
        [
            (np.abs(yy - c) < 1.5).astype(float),
            (np.abs(xx - c) < 1.5).astype(float),
            (np.abs(yy - xx) < 1.5).astype(float),
            (np.abs(np.hypot(yy - c, xx - c) - 4.5) < 1.0).astype(float),
        ]
    )
    labels = np.arange(n) % 4
    rng.shuffle(labels)
    shifts = rng.integers(-3, 4, size=(n, 2))
    images = np.stack(
        [np.roll(templates[k], tuple(s), axis=(0, 1)) for k, s in zip(labels, shifts, strict=True)]
    )
    images = images + NOISE * rng.standard_normal(images.shape)
    return _split(images[:, None], labels, test_size=800, classify=True)


@functools.cache
def waveforms() -> Split:
    """64-sample signals of 4 wave shapes (sine, square, triangle, sawtooth) with a random
    frequency (1.5 to 4 cycles), phase and amplitude (0.5 to 1.5), under Gaussian noise of sd
    0.3 (1200 training signals, 800 test signals)."""
    rng = np.random.default_rng(1602)
    n, length = 2000, 64
    labels = np.arange(n) % 4
    rng.shuffle(labels)
    t = np.arange(length) / length
    cycles = rng.uniform(1.5, 4.0, (n, 1))
    phase = rng.uniform(0, 1, (n, 1))
    u = (cycles * t + phase) % 1.0  # position within the cycle, in [0, 1)
    shapes = np.stack(
        [
            np.sin(2 * np.pi * u),
            np.where(u < 0.5, 1.0, -1.0),
            4 * np.abs(u - 0.5) - 1,
            2 * u - 1,
        ]
    )
    signal = shapes[labels, np.arange(n)] * rng.uniform(0.5, 1.5, (n, 1))
    signal = signal + 0.3 * rng.standard_normal(signal.shape)
    return _split(signal[:, None], labels, test_size=800, classify=True, scale_x=False)


@functools.cache
def frequencies() -> Split:
    """24-step sequences of one feature: a sine of one of 3 close frequencies (1.5, 2 or 2.5
    cycles), random phase, under Gaussian noise of sd 0.8 (1000 training, 800 test
    sequences)."""
    rng = np.random.default_rng(1603)
    n, length = 1800, 24
    labels = np.arange(n) % 3
    rng.shuffle(labels)
    cycles = np.array([1.5, 2.0, 2.5])[labels][:, None]
    t = np.arange(length) / length
    x = np.sin(2 * np.pi * (cycles * t + rng.uniform(0, 1, (n, 1))))
    x = x + 0.8 * rng.standard_normal(x.shape)
    return _split(x[:, :, None], labels, test_size=800, classify=True, scale_x=False)


ADDING_LENGTH = 10


@functools.cache
def adding() -> Split:
    """The adding problem (Hochreiter & Schmidhuber): 10 steps of (value in [0, 1], marker);
    the target is the sum of the two marked values (1500 training, 1000 test sequences)."""
    rng = np.random.default_rng(1604)
    n, length = 2500, ADDING_LENGTH
    values = rng.uniform(0, 1, (n, length))
    markers = np.zeros((n, length))
    for i in range(n):
        markers[i, rng.choice(length, 2, replace=False)] = 1.0
    x = np.stack([values, markers], axis=-1)
    y = (values * markers).sum(axis=1)
    return _split(x, y, test_size=1000, classify=False, scale_x=False)


COUNT_VOCAB, COUNT_LENGTH = 3, 24


@functools.cache
def counts() -> Split:
    """Sequences of 24 tokens over 3; the label is whether token 0 occurs more often than
    token 1 (sequences with a tie are dropped; 1000 training, 1000 test sequences)."""
    rng = np.random.default_rng(1605)
    x = rng.integers(0, COUNT_VOCAB, (2600, COUNT_LENGTH))
    a, b = (x == 0).sum(axis=1), (x == 1).sum(axis=1)
    keep = a != b
    x, y = x[keep][:2000], (a > b)[keep][:2000].astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=1000, random_state=0, stratify=y)
    return Split(
        torch.from_numpy(x_tr),
        torch.from_numpy(y_tr),
        torch.from_numpy(x_te),
        torch.from_numpy(y_te),
    )


@functools.cache
def wine() -> Split:
    """Wine (bundled): 178 wines, 13 features, 3 cultivars; half held out (89 / 89)."""
    bunch = load_wine()
    return _split(bunch.data, bunch.target.astype(np.int64), test_size=0.5, classify=True)


@functools.cache
def iris() -> Split:
    """Iris (bundled): 150 flowers, 4 features, 3 species; half held out (75 / 75)."""
    bunch = load_iris()
    return _split(bunch.data, bunch.target.astype(np.int64), test_size=0.5, classify=True)


@functools.cache
def circles() -> Split:
    """``make_circles``: 1500 points, noise 0.2, inner radius 0.5 (1000 / 500)."""
    x, y = make_circles(n_samples=1500, noise=0.2, factor=0.5, random_state=1606)
    return _split(x, y.astype(np.int64), test_size=500, classify=True)


@functools.cache
def blobs() -> Split:
    """``make_blobs``: 2000 points in 10 dimensions around 5 centres, spread 6 (1200 / 800)."""
    x, y = make_blobs(n_samples=2000, n_features=10, centers=5, cluster_std=6.0, random_state=1607)
    return _split(x, y.astype(np.int64), test_size=800, classify=True)


@functools.cache
def linear_regression() -> Split:
    """``make_regression``: 1000 x 20, 10 informative, noise 5 (R^2 near 0.999; 600 / 400)."""
    x, y = make_regression(
        n_samples=1000, n_features=20, n_informative=10, noise=5.0, random_state=1608
    )
    return _split(x, y, test_size=400, classify=False, scale_y=True)


@functools.cache
def small_regression() -> Split:
    """``make_regression``: 300 x 8, all informative, noise 2 (150 / 150)."""
    x, y = make_regression(n_samples=300, n_features=8, noise=2.0, random_state=1609)
    return _split(x, y, test_size=150, classify=False, scale_y=True)


@functools.cache
def friedman2() -> Split:
    """``make_friedman2``: 1500 x 4, noise 50 (an impedance; 1000 / 500)."""
    x, y = make_friedman2(n_samples=1500, noise=50.0, random_state=1610)
    return _split(x, y, test_size=500, classify=False, scale_y=True)


@functools.cache
def friedman3() -> Split:
    """``make_friedman3``: 1500 x 4, noise 0.1 (a phase angle; 1000 / 500)."""
    x, y = make_friedman3(n_samples=1500, noise=0.1, random_state=1611)
    return _split(x, y, test_size=500, classify=False, scale_y=True)


@functools.cache
def swiss_roll() -> Split:
    """``make_swiss_roll``: 1500 points in 3-D, noise 0.5; the target is the position along
    the roll (1000 / 500)."""
    x, t = make_swiss_roll(n_samples=1500, noise=0.5, random_state=1612)
    return _split(x, t, test_size=500, classify=False, scale_y=True)


# -- models ----------------------------------------------------------------------------------


def mlp(
    sizes: tuple[int, ...], *, dropout: float = 0.0, act: type[nn.Module] = nn.ReLU
) -> Callable[[], nn.Module]:
    """An MLP factory: Linear-activation(-Dropout) between the given widths, none at the end."""

    def make() -> nn.Module:
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(sizes[:-1]):
            layers += [nn.Linear(a, b), act()]
            if dropout:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(sizes[-2], sizes[-1]))
        return nn.Sequential(*layers)

    make.__qualname__ = f"mlp{sizes}"
    return make


def bn_cnn() -> nn.Module:
    """Conv2d 1->8->16 (3x3), each with BatchNorm2d, ReLU and 2x2 max-pooling; linear head."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 4),
    )


def bn_cnn1d() -> nn.Module:
    """Conv1d 1->16->32 (width 5, stride 2), each with BatchNorm1d and ReLU; global average
    pooling; linear head."""
    return nn.Sequential(
        nn.Conv1d(1, 16, 5, stride=2, padding=2),
        nn.BatchNorm1d(16),
        nn.ReLU(),
        nn.Conv1d(16, 32, 5, stride=2, padding=2),
        nn.BatchNorm1d(32),
        nn.ReLU(),
        nn.AdaptiveAvgPool1d(1),
        nn.Flatten(),
        nn.Linear(32, 4),
    )


class Recurrent(nn.Module):
    """A one-layer GRU or LSTM over the sequence; a linear head on its last hidden state."""

    def __init__(self, cell: str, n_in: int, hidden: int, n_out: int) -> None:
        super().__init__()
        self.rnn: nn.GRU | nn.LSTM = (nn.GRU if cell == "gru" else nn.LSTM)(
            n_in, hidden, batch_first=True
        )
        self.head = nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


def gru() -> nn.Module:
    """GRU 1 -> 32, 3 classes."""
    return Recurrent("gru", 1, 32, 3)


def lstm() -> nn.Module:
    """LSTM 2 -> 32, one regression output."""
    return Recurrent("lstm", 2, 32, 1)


class CountTransformer(nn.Module):
    """A one-layer pre-LayerNorm transformer encoder (d=32, 4 heads) over token embeddings
    with learned positions, a class token first; a linear head reads the class token (so the
    count has to go through attention: a mean over the tokens would make it linear)."""

    def __init__(self, d: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(COUNT_VOCAB + 1, d)  # the last id is the class token
        self.pos = nn.Parameter(torch.randn(1, COUNT_LENGTH + 1, d) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d, nhead=4, dim_feedforward=2 * d, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cls = torch.full((len(x), 1), COUNT_VOCAB, dtype=x.dtype, device=x.device)
        h = self.encoder(self.embed(torch.cat([cls, x], dim=1)) + self.pos)
        return self.head(self.norm(h[:, 0]))


# -- the problems ----------------------------------------------------------------------------


def _task(
    name: str,
    model: Callable[[], nn.Module],
    data: Callable[[], Split],
    *,
    optimizer: OptimizerFactory,
    batch_size: int,
    epochs: int,
    regression: bool = False,
) -> Callable[[], Task]:
    def build() -> Task:
        split = data()
        return Task(
            make_model=model,
            train=(split.x_train, split.y_train),
            test=(split.x_test, split.y_test),
            loss=nn.MSELoss() if regression else nn.CrossEntropyLoss(),
            metric="loss" if regression else "accuracy",
            make_optimizer=optimizer,
            batch_size=batch_size,
            epochs=epochs,
            name=name,
        )

    return build


def _p(
    name: str,
    model_words: str,
    model: Callable[[], nn.Module],
    data: Callable[[], Split],
    **kwargs: object,
) -> Problem:
    doc = " ".join((data.__doc__ or "").split())
    return Problem(name, model_words, doc, _task(name, model, data, **kwargs))  # type: ignore[arg-type]


PROBLEMS: dict[str, Problem] = {
    p.name: p
    for p in [
        # BatchNorm CNNs; noisy16-bn-cnn is the new user's case (800 images, 6 x 25 = 150 steps)
        _p(
            "noisy16-bn-cnn",
            "CNN 2x(conv-BN-ReLU-pool), 4 classes",
            bn_cnn,
            noisy_images,
            optimizer=sgd(),
            batch_size=32,
            epochs=6,
        ),
        _p(
            "waves-bn-cnn1d",
            "1-D CNN 2x(conv-BN-ReLU), avg-pool, 4 classes",
            bn_cnn1d,
            waveforms,
            optimizer=adamw(),
            batch_size=64,
            epochs=6,
        ),
        # recurrent nets and a transformer
        _p(
            "freq-gru",
            "GRU 32, 3 classes",
            gru,
            frequencies,
            optimizer=adamw(),
            batch_size=32,
            epochs=6,
        ),
        _p(
            "adding-lstm",
            "LSTM 32, MSE",
            lstm,
            adding,
            optimizer=adamw(),
            batch_size=64,
            epochs=16,
            regression=True,
        ),
        _p(
            "count-transformer",
            "1-layer transformer d=32, 2 classes",
            CountTransformer,
            counts,
            optimizer=adamw(),
            batch_size=32,
            epochs=4,
        ),
        # tabular MLPs with dropout (wine and iris: tiny data, under 100 steps in all)
        _p(
            "wine-dropout-mlp",
            "MLP 13-64-64-3, dropout 0.3",
            mlp((13, 64, 64, 3), dropout=0.3),
            wine,
            optimizer=sgd(),
            batch_size=16,
            epochs=12,
        ),
        _p(
            "iris-mlp",
            "MLP 4-32-3",
            mlp((4, 32, 3)),
            iris,
            optimizer=adamw(),
            batch_size=8,
            epochs=8,
        ),
        _p(
            "circles-dropout-mlp",
            "MLP 2-64-64-2, dropout 0.2",
            mlp((2, 64, 64, 2), dropout=0.2),
            circles,
            optimizer=sgd(),
            batch_size=32,
            epochs=8,
        ),
        _p(
            "blobs-dropout-mlp",
            "MLP 10-128-128-5, dropout 0.5",
            mlp((10, 128, 128, 5), dropout=0.5),
            blobs,
            optimizer=sgd(),
            batch_size=32,
            epochs=5,
        ),
        # MSE regressions; the first two are small and well conditioned, with few steps: the
        # best LR is high (plain SGD near 0.2, AdamW near 0.05)
        _p(
            "linear-mse",
            "MLP 20-16-1 (a near-linear target), MSE",
            mlp((20, 16, 1)),
            linear_regression,
            optimizer=sgd(momentum=0.0),
            batch_size=32,
            epochs=4,
            regression=True,
        ),
        _p(
            "small-linear-mse",
            "MLP 8-32-1 (a linear target), MSE",
            mlp((8, 32, 1)),
            small_regression,
            optimizer=adamw(),
            batch_size=16,
            epochs=4,
            regression=True,
        ),
        _p(
            "friedman2-mse",
            "MLP 4-64-64-1, MSE",
            mlp((4, 64, 64, 1)),
            friedman2,
            optimizer=adamw(),
            batch_size=32,
            epochs=8,
            regression=True,
        ),
        _p(
            "friedman3-dropout-mse",
            "MLP 4-64-64-1, dropout 0.1, MSE",
            mlp((4, 64, 64, 1), dropout=0.1),
            friedman3,
            optimizer=sgd(),
            batch_size=32,
            epochs=8,
            regression=True,
        ),
        _p(
            "swissroll-tanh-mse",
            "MLP 3-64-64-1 with tanh, MSE",
            mlp((3, 64, 64, 1), act=nn.Tanh),
            swiss_roll,
            optimizer=sgd(),
            batch_size=64,
            epochs=10,
            regression=True,
        ),
    ]
}


def task_named(name: str) -> Task:
    """A built-in task by name, or one of these problems as ``unseen:NAME``: how the benchmarks
    that run both (``benchmarks/fidelity``, ``benchmarks/budget``) name their tasks."""
    if name.startswith("unseen:"):
        return PROBLEMS[name.removeprefix("unseen:")].task()
    return load_task(name)
