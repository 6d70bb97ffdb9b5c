"""Tests for lrsearch/tasks/charlm.py: the help-text data, its split, the causal transformer, and
the pipeline's pieces with 2-D (per-position) targets."""

from __future__ import annotations

import math
import socket
from pathlib import Path
from pydoc_data.topics import topics
from typing import Any

import pytest
import tiny_task
import torch
from torch import nn

from lrsearch import InvalidParameterError
from lrsearch.schedules import Schedule
from lrsearch.splits import cv_folds, holdout
from lrsearch.study import run_study
from lrsearch.tasks import Split, Task, adamw, charlm, load_task, subset
from lrsearch.training import evaluate, fit, train_task

CPU = torch.device("cpu")
SMALL_CONTEXT = 16


def text(ids: torch.Tensor) -> str:
    """The characters of ``ids`` (the placeholder as U+FFFD)."""
    return "".join(charlm.VOCAB[i] if i < charlm.UNKNOWN else "\ufffd" for i in ids.tolist())


def tiny_model() -> nn.Module:
    return charlm.CharTransformer(context=SMALL_CONTEXT, width=16, heads=2, layers=1)


def tiny_task_of_charlm(*, epochs: int = 2) -> Task:
    """The charlm task shrunk to seconds: 96 short windows, a one-block model."""
    split = charlm.load_data(n_train=96, n_test=16, context=SMALL_CONTEXT)
    return Task(
        make_model=tiny_model,
        train=(split.x_train, split.y_train),
        test=(split.x_test, split.y_test),
        loss=charlm.next_char_loss,
        metric="loss",
        make_optimizer=adamw(),
        batch_size=8,
        epochs=epochs,
        name="charlm-tiny",
    )


@pytest.fixture(scope="module")
def split() -> Split:
    return charlm.load_data()


# -- data ---------------------------------------------------------------------------------------


def test_loads_without_a_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("charlm tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert len(charlm.load_data(n_train=4, n_test=4).x_train) == 4
    assert load_task("charlm").n_train == 1536


def test_split_is_by_topic_and_deterministic() -> None:
    train, test = charlm.split_topics()
    assert train and test
    assert set(train).isdisjoint(test)
    assert set(train) | set(test) == set(topics)
    assert charlm.split_topics() == (train, test)
    # A fifth of the topics in expectation; check the text is split sensibly too.
    test_chars = sum(len(topics[name]) for name in test)
    assert 0.1 < test_chars / sum(len(t) for t in topics.values()) < 0.4


def test_windows_come_from_their_own_side_and_the_test_text_is_unseen(split: Split) -> None:
    train, test = charlm.split_topics()
    # Each document as the model sees it (placeholders included), to search windows in.
    seen = {name: text(charlm.encode(topics[name])) for name in topics}

    def found(x: torch.Tensor, y: torch.Tensor, names: list[str]) -> list[bool]:
        windows = (text(torch.cat([xi, yi[-1:]])) for xi, yi in zip(x, y, strict=True))
        return [any(w in seen[name] for name in names) for w in windows]

    assert all(found(split.x_train[::8], split.y_train[::8], train))
    assert all(found(split.x_test, split.y_test, test))
    # Some topics repeat others' sections; no test window is in a training document.
    assert not any(found(split.x_test, split.y_test, train))


def test_loading_is_deterministic(split: Split) -> None:
    for a, b in zip(split, charlm.load_data(), strict=True):
        assert torch.equal(a, b)


def test_vocabulary_is_fixed_and_ids_are_in_range(split: Split) -> None:
    assert charlm.VOCAB_SIZE == len(charlm.VOCAB) + 1 == 97
    assert len(set(charlm.VOCAB)) == len(charlm.VOCAB)
    assert charlm.VOCAB[0] == "\n" and charlm.VOCAB[1:] == "".join(map(chr, range(32, 127)))
    assert torch.equal(charlm.encode(charlm.VOCAB), torch.arange(len(charlm.VOCAB)))
    assert charlm.encode("\u2019\t\u00df").tolist() == [charlm.UNKNOWN] * 3
    for ids in split:
        assert ids.dtype == torch.int64
        assert int(ids.min()) >= 0 and int(ids.max()) < charlm.VOCAB_SIZE
    everything = charlm.encode("".join(topics.values()))
    assert int(everything.max()) == charlm.UNKNOWN  # the help text has a few curly quotes


def test_shapes_and_targets_are_the_next_characters(split: Split) -> None:
    assert split.x_train.shape == split.y_train.shape == (1536, charlm.CONTEXT)
    assert split.x_test.shape == split.y_test.shape == (256, charlm.CONTEXT)
    for x, y in ((split.x_train, split.y_train), (split.x_test, split.y_test)):
        assert torch.equal(y[:, :-1], x[:, 1:])


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"n_train": 0}, "n_train"), ({"n_test": 2.0}, "n_test"), ({"context": -1}, "context")],
)
def test_load_data_rejects_bad_sizes(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(InvalidParameterError, match=name):
        charlm.load_data(**kwargs)


def test_load_data_refuses_more_windows_than_the_text_holds() -> None:
    with pytest.raises(InvalidParameterError, match=r"asked for 100000 windows"):
        charlm.load_data(n_train=100_000)


# -- model and loss -----------------------------------------------------------------------------


@pytest.mark.parametrize("training", [True, False])
def test_model_is_causal(split: Split, training: bool) -> None:
    torch.manual_seed(0)
    model = charlm.make_model().train(training)
    x = split.x_test[:4].clone()
    t = 40
    changed = x.clone()
    changed[:, t] = (changed[:, t] + 1) % charlm.VOCAB_SIZE
    with torch.no_grad():
        before, after = model(x), model(changed)
    assert before.shape == (4, charlm.CONTEXT, charlm.VOCAB_SIZE)
    torch.testing.assert_close(after[:, :t], before[:, :t])
    assert not torch.allclose(after[:, t:], before[:, t:])


def test_model_takes_shorter_inputs_and_refuses_longer_ones() -> None:
    model = charlm.make_model()
    assert model(torch.zeros(2, 5, dtype=torch.long)).shape == (2, 5, charlm.VOCAB_SIZE)
    with pytest.raises(InvalidParameterError, match="at most 64 characters"):
        model(torch.zeros(1, charlm.CONTEXT + 1, dtype=torch.long))


def test_model_uses_torchs_pre_layernorm_blocks() -> None:
    model = charlm.make_model()
    blocks = [m for m in model.modules() if isinstance(m, nn.TransformerEncoderLayer)]
    assert len(blocks) == 2 and all(b.norm_first for b in blocks)


def test_model_init_follows_torch_seed() -> None:
    torch.manual_seed(3)
    a = charlm.make_model().state_dict()
    torch.manual_seed(3)
    b = charlm.make_model().state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_loss_is_cross_entropy_over_every_position() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 7, generator=g)
    targets = torch.randint(0, 7, (3, 5), generator=g)
    by_hand = -torch.log_softmax(logits, dim=-1).gather(-1, targets[..., None]).mean()
    torch.testing.assert_close(charlm.next_char_loss(logits, targets), by_hand)


def test_an_epoch_with_the_tasks_optimizer_lowers_the_training_loss(split: Split) -> None:
    task = load_task("charlm")
    torch.manual_seed(0)
    model = task.make_model()
    optimizer = task.make_optimizer(model.parameters(), 1e-3)
    train = (split.x_train[:512], split.y_train[:512])  # a third of the data: 32 steps
    probe = (train[0][:256], train[1][:256])
    start = evaluate(model, probe, metric="loss", loss=task.loss)
    assert math.isclose(start, math.log(charlm.VOCAB_SIZE), rel_tol=0.15)  # about uniform
    result = fit(model, optimizer, task.loss, train, epochs=1, batch_size=task.batch_size)
    end = evaluate(model, probe, metric="loss", loss=task.loss)
    assert result.steps == 32
    assert result.train_losses[0] < start
    assert end < start - 1.0


# -- the task and the pipeline ------------------------------------------------------------------


def test_task_is_loss_to_minimize_with_adamw() -> None:
    task = load_task("charlm")
    assert (task.name, task.n_train, task.epochs, task.batch_size) == ("charlm", 1536, 8, 16)
    assert (task.metric, task.metric_name, task.direction, task.stratify) == (
        "loss",
        "loss",
        "minimize",
        False,
    )
    assert task.loss is charlm.next_char_loss
    opt = task.make_optimizer(task.make_model().parameters(), 1e-3)
    assert isinstance(opt, torch.optim.AdamW)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    assert task.describe()["optimizer"] == "adamw(weight_decay=0.1, betas=(0.9, 0.95))"
    assert load_task("charlm", epochs=2).epochs == 2


def test_pipeline_pieces_handle_per_position_targets() -> None:
    task = tiny_task_of_charlm()
    fit_idx, val_idx = holdout(task, 0.25, seed=0)
    assert (len(fit_idx), len(val_idx)) == (72, 24)
    train, val = subset(task.train, fit_idx), subset(task.train, val_idx)
    assert val[1].shape == (24, SMALL_CONTEXT)  # type: ignore[index]
    folds = cv_folds(task, 3, seed=0)
    assert sorted(i for _, score in folds for i in score) == list(range(96))
    schedule = Schedule("cosine", max_lr=3e-3, base_lr=3e-4, warmup=2)
    result = train_task(task, train, schedule=schedule, eval_data=val, seed=0, device=CPU)
    assert result.epochs_run == 2 and all(math.isfinite(v) for v in result.values)
    assert result.values[-1] < math.log(charlm.VOCAB_SIZE)
    torch.manual_seed(0)
    model = task.make_model()
    whole = evaluate(model, task.load_test(), metric="loss", loss=task.loss)
    # Evaluation in chunks gives the mean over every position of every window.
    x, y = task.load_test()  # type: ignore[misc]
    with torch.no_grad():
        torch.testing.assert_close(whole, float(task.loss(model(x), y)))


def test_the_whole_study_runs_on_a_tiny_charlm(tmp_path: Path) -> None:
    # Range test, search, CV, Adam, finalists and the final comparison, all on 2-D targets.
    cfg = tiny_task.config("charlm-tiny", task="charlm", n_trials=3, epochs=2)
    url = f"sqlite:///{tmp_path / 'charlm.db'}"
    result = run_study(cfg, storage=url, task=tiny_task_of_charlm())
    assert result.comparison is not None
    for arm in ("tuned", "constant-cv", "adam-3e-4"):
        per_seed = result.comparison[arm]["test_metric_per_seed"]
        assert len(per_seed) == 2
        assert all(0 < v < 2 * math.log(charlm.VOCAB_SIZE) for v in per_seed)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_trains_and_evaluates_on_cuda() -> None:
    # Nothing in the model is made on the CPU: the positions and the mask follow the input.
    task = tiny_task_of_charlm(epochs=1)
    cuda = torch.device("cuda")
    result = train_task(
        task, task.train, schedule=None, lr=1e-3, eval_data=None, seed=0, device=cuda
    )
    assert result.epochs_run == 1
    torch.manual_seed(0)
    model = task.make_model().to(cuda)
    on_gpu = evaluate(model, task.load_test(), metric="loss", loss=task.loss)
    on_cpu = evaluate(model.cpu(), task.load_test(), metric="loss", loss=task.loss)
    assert math.isclose(on_gpu, on_cpu, rel_tol=1e-3)


def test_validation_and_cv_hold_out_whole_topics() -> None:
    import numpy as np

    from lrsearch.splits import cv_folds, holdout

    task = charlm.task()
    groups = np.asarray(task.groups)
    assert len(groups) == task.n_train and len(np.unique(groups)) == len(charlm.split_topics()[0])
    fit, val = holdout(task, 0.2, seed=0)
    assert not set(groups[fit]) & set(groups[val])
    assert 0.15 <= len(val) / task.n_train <= 0.25
    for fit, score in cv_folds(task, 3, seed=0):
        assert not set(groups[fit]) & set(groups[score])
