"""Tests for lrsearch/config.py: StudyConfig, load_config, find_config, check_study_name, KEYS."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from assertions import invalid

from lrsearch import KINDS, InvalidParameterError, LrsearchError
from lrsearch.config import KEYS, StudyConfig, check_study_name, find_config, load_config

PACKAGED = ("charlm", "digits", "mnist1d")

# A valid value for every key in KEYS (none of them a default, so each one visibly lands).
VALID: dict[str, Any] = {
    "task": "pkg.mod:make",
    "n_trials": 7,
    "timeout": 12.5,
    "budget": 50.0,
    "fidelity": 0.5,
    "seed": 3,
    "sampler": "random",
    "pruner": "hyperband",
    "warmup_epochs": 2,
    "kinds": ["sgdr", "constant"],
    "optimizers": ["adamw", "sgd"],
    "arms": ["tuned", "prodigy"],
    "epochs": 4,
    "batch_size": 16,
    "validation_fraction": 0.3,
    "cv_folds": 3,
    "cv_grid": 4,
    "finalists": 2,
    "final_seeds": 2,
    "device": "cpu",
    "threads": 2,
    "heartbeat_interval": 2,
    "grace_period": 40,
    "diagnostics": False,
    "range_test.start_lr": 1e-6,
    "range_test.end_lr": 3.0,
    "range_test.num_iter": 50,
    "range_test.repeats": 2,
    "range_test.redo": 1,
}


def _toml(value: Any) -> str:
    """``value`` as a TOML literal (json's spelling is valid TOML for these types)."""
    return json.dumps(value)


def write_config(directory: Path, name: str, body: str) -> Path:
    path = directory / f"{name}.toml"
    path.write_text(body, encoding="utf-8")
    return path


def load_text(tmp_path: Path, body: str, **overrides: Any) -> StudyConfig:
    return load_config("t", path=write_config(tmp_path, "t", body), overrides=overrides or None)


def one_line(info: pytest.ExceptionInfo[ValueError]) -> None:
    assert "\n" not in str(info.value)


# -- packaged configs and lookup --------------------------------------------------------------


@pytest.mark.parametrize("name", PACKAGED)
def test_packaged_configs_load_from_any_cwd(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./studies here: the packaged file is the only one
    cfg = load_config(name)
    assert cfg.name == name and cfg.task == name
    assert cfg.kinds == KINDS and cfg.sampler == "tpe" and cfg.budget == 20
    assert cfg.threads == 1 and cfg.range_num_iter == 100
    assert (cfg.range_start_lr, cfg.range_end_lr) == (1e-7, 10.0)
    source = find_config(name)
    assert source is not None and source.is_file()
    assert cfg.source == str(source)
    assert Path(cfg.source).parent.name == "studies"
    assert not Path(cfg.source).is_relative_to(tmp_path)


def test_packaged_configs_spend_a_stated_budget_planned_per_task() -> None:
    from lrsearch.pipeline.budget import FIDELITY
    from lrsearch.pipeline.context import prepare

    planned = {}
    for name in PACKAGED:
        cfg = load_config(name)
        assert cfg.budget == 20 and cfg.given is not None
        assert not cfg.given & {"n_trials", "cv_folds", "cv_grid", "finalists", "pruner"}
        planned[name], *_ = prepare(cfg)
        assert planned[name].fidelity == FIDELITY and planned[name].pruner == "none"
    # The plan follows each task's size and epochs.
    assert planned["digits"].n_trials == 15 and planned["charlm"].n_trials == 14
    assert planned["mnist1d"].n_trials == 20
    assert (planned["charlm"].final_seeds, planned["digits"].final_seeds) == (3, 5)


def test_local_studies_file_wins_over_the_packaged_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "studies").mkdir()
    local = write_config(tmp_path / "studies", "digits", 'task = "digits"\nn_trials = 3\n')
    monkeypatch.chdir(tmp_path)
    assert find_config("digits") == Path("studies/digits.toml").absolute() == local
    cfg = load_config("digits")
    assert cfg.n_trials == 3 and cfg.source == str(local)
    # Keys the local file leaves out take the dataclass defaults, not the packaged file's.
    assert cfg.threads == 0 and cfg.warmup_epochs is None


def test_find_config_takes_an_explicit_cwd(tmp_path: Path) -> None:
    (tmp_path / "studies").mkdir()
    local = write_config(tmp_path / "studies", "mine", 'task = "digits"\n')
    assert find_config("mine", cwd=tmp_path) == local
    assert find_config("mine", cwd=tmp_path / "studies") is None
    packaged = find_config("mnist1d", cwd=tmp_path)
    assert packaged is not None and packaged.name == "mnist1d.toml"


def test_a_local_name_without_a_file_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert find_config("nosuchstudy") is None
    with invalid("nosuchstudy") as info:
        load_config("nosuchstudy")
    assert "studies/nosuchstudy.toml" in str(info.value)
    one_line(info)


def test_an_explicit_path_does_not_need_the_name_to_match(tmp_path: Path) -> None:
    path = write_config(tmp_path, "whatever", 'task = "mnist1d"\nseed = 9\n')
    cfg = load_config("other-name", path=str(path))
    assert (cfg.name, cfg.task, cfg.seed, cfg.source) == ("other-name", "mnist1d", 9, str(path))


# -- overrides ----------------------------------------------------------------------------------


def test_overrides_replace_keys_and_none_is_ignored(tmp_path: Path) -> None:
    cfg = load_text(
        tmp_path,
        'task = "digits"\nn_trials = 10\nseed = 4\n[range_test]\nnum_iter = 20\n',
        n_trials=2,
        seed=None,
        device=None,
        **{"range_test.end_lr": 1.0},
    )
    assert cfg.n_trials == 2  # replaced
    assert cfg.seed == 4  # None leaves the file's value
    assert cfg.device == "auto"  # None leaves the default
    assert (cfg.range_num_iter, cfg.range_end_lr) == (20, 1.0)


def test_overrides_can_supply_the_task_and_a_range_test_table(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, "n_trials = 3\n", task="mnist1d", range_test={"repeats": 3})
    assert (cfg.task, cfg.n_trials, cfg.range_repeats) == ("mnist1d", 3, 3)


def test_overrides_are_validated_like_the_file(tmp_path: Path) -> None:
    with invalid("n_trials", 0):
        load_text(tmp_path, 'task = "digits"\n', n_trials=0)
    with invalid("bogus"):
        load_text(tmp_path, 'task = "digits"\n', bogus=1)


def test_replace_takes_toml_keys_and_ignores_none() -> None:
    cfg = StudyConfig(name="demo", task="digits")
    new = cfg.replace(n_trials=3, seed=None, kinds=["step"], range_test={"num_iter": 10})
    assert (new.n_trials, new.seed, new.kinds, new.range_num_iter) == (3, 0, ("step",), 10)
    assert cfg.n_trials == 40  # frozen: the original is untouched
    with invalid("cv_folds", 1):
        cfg.replace(cv_folds=1)


# -- every key --------------------------------------------------------------------------------


def test_every_documented_key_is_accepted(tmp_path: Path) -> None:
    assert set(VALID) == set(KEYS)
    # Dotted keys are TOML too: range_test.start_lr = ... fills the [range_test] table.
    body = "".join(f"{key} = {_toml(value)}\n" for key, value in VALID.items())
    cfg = load_text(tmp_path, body)
    for key, value in VALID.items():
        field = key.replace("range_test.", "range_")
        expected = tuple(value) if isinstance(value, list) else value
        assert getattr(cfg, field) == expected, key


@pytest.mark.parametrize("key", sorted(KEYS))
def test_each_key_alone_is_accepted_as_an_override(key: str, tmp_path: Path) -> None:
    base = 'task = "digits"\n'
    cfg = load_text(tmp_path, base, **{key: VALID[key]})
    field = key.replace("range_test.", "range_")
    value = VALID[key]
    assert getattr(cfg, field) == (tuple(value) if isinstance(value, list) else value)


def test_range_test_table_keys_map_to_fields(tmp_path: Path) -> None:
    cfg = load_text(
        tmp_path,
        'task = "digits"\n[range_test]\nstart_lr = 1e-5\nend_lr = 2.0\nnum_iter = 30\n'
        "repeats = 4\n",
    )
    assert (cfg.range_start_lr, cfg.range_end_lr, cfg.range_num_iter, cfg.range_repeats) == (
        1e-5,
        2.0,
        30,
        4,
    )


def test_defaults_match_the_documented_ones() -> None:
    cfg = StudyConfig(name="d", task="digits")
    documented = {key: default.strip("`") for key, (_, default) in KEYS.items()}
    for key in ("n_trials", "seed", "validation_fraction", "cv_folds", "cv_grid"):
        assert str(getattr(cfg, key)) == documented[key], key
    for key in ("finalists", "final_seeds", "threads", "sampler", "pruner", "device"):
        assert str(getattr(cfg, key)) == documented[key], key
    assert cfg.range_end_lr == float(documented["range_test.end_lr"])
    assert cfg.range_start_lr == float(documented["range_test.start_lr"])
    assert cfg.range_num_iter == int(documented["range_test.num_iter"])
    assert cfg.range_repeats == int(documented["range_test.repeats"])
    assert cfg.range_redo == int(documented["range_test.redo"])
    assert documented["task"] == "required"
    assert len(cfg.kinds) == 12  # "all twelve"


# -- validation -------------------------------------------------------------------------------

# (TOML body after the task line, the key the message must name, the bad value it must show)
BAD_VALUES: list[tuple[str, str, object]] = [
    ("n_trials = 0", "n_trials", 0),
    ("n_trials = -3", "n_trials", -3),
    ("n_trials = true", "n_trials", True),
    ("n_trials = 2.0", "n_trials", 2.0),
    ('n_trials = "5"', "n_trials", "5"),
    ("seed = -1", "seed", -1),
    ("seed = false", "seed", False),
    ("timeout = 0", "timeout", 0),
    ("budget = 0", "budget", 0),
    ("budget = -2", "budget", -2),
    ("fidelity = 0", "fidelity", 0),
    ("fidelity = 1.5", "fidelity", 1.5),
    ('fidelity = "1/3"', "fidelity", "1/3"),
    ("timeout = -1.5", "timeout", -1.5),
    ("timeout = nan", "timeout", float("nan")),
    ("timeout = inf", "timeout", float("inf")),
    ("timeout = true", "timeout", True),
    ('timeout = "1h"', "timeout", "1h"),
    ('sampler = "cmaes"', "sampler", "cmaes"),
    ("sampler = 1", "sampler", 1),
    ('pruner = "threshold"', "pruner", "threshold"),
    ('device = "tpu"', "device", "tpu"),
    ('device = "CPU"', "device", "CPU"),
    ("warmup_epochs = -1", "warmup_epochs", -1),
    ("warmup_epochs = true", "warmup_epochs", True),
    ("epochs = 0", "epochs", 0),
    ("epochs = 1.5", "epochs", 1.5),
    ("batch_size = 0", "batch_size", 0),
    ("batch_size = true", "batch_size", True),
    ("validation_fraction = 0", "validation_fraction", 0),
    ("validation_fraction = 0.0", "validation_fraction", 0.0),
    ("validation_fraction = 0.95", "validation_fraction", 0.95),
    ("validation_fraction = 0.9", "validation_fraction", 0.9),
    ("validation_fraction = -0.1", "validation_fraction", -0.1),
    ("validation_fraction = true", "validation_fraction", True),
    ("cv_folds = 1", "cv_folds", 1),
    ("cv_folds = true", "cv_folds", True),
    ("cv_grid = 1", "cv_grid", 1),
    ("finalists = 0", "finalists", 0),
    ("finalists = true", "finalists", True),
    ("final_seeds = 1", "final_seeds", 1),
    ("final_seeds = 3.0", "final_seeds", 3.0),
    ("threads = -1", "threads", -1),
    ("threads = false", "threads", False),
    ("heartbeat_interval = 0", "heartbeat_interval", 0),
    ("heartbeat_interval = 1.5", "heartbeat_interval", 1.5),
    ("grace_period = 1", "grace_period", 1),
    ("grace_period = 5", "grace_period", 5),  # not longer than the default heartbeat (10)
    ("diagnostics = 1", "diagnostics", 1),
    ('diagnostics = "off"', "diagnostics", "off"),
    ('kinds = "step"', "kinds", "step"),
    ("kinds = []", "kinds", []),
    ('kinds = ["step", "warmup"]', "kinds", "warmup"),
    ('kinds = ["step", "sgdr", "step"]', "kinds", ["step", "sgdr", "step"]),
    ("kinds = [1]", "kinds", 1),
    ("kinds = 3", "kinds", 3),
    ('optimizers = ["adam"]', "optimizers", "adam"),
    ('optimizers = "sgd"', "optimizers", "sgd"),
    ("optimizers = []", "optimizers", []),
    ('optimizers = ["sgd", "sgd"]', "optimizers", ["sgd", "sgd"]),
    ('arms = ["tuned", "adam"]', "arms", "adam"),
    ('arms = ["constant-cv", "prodigy"]', "arms", ["constant-cv", "prodigy"]),
    ("arms = []", "arms", []),
    ('arms = "tuned"', "arms", "tuned"),
    ("range_test.start_lr = 0", "range_test.start_lr", 0),
    ("range_test.start_lr = -1e-3", "range_test.start_lr", -1e-3),
    ("range_test.start_lr = true", "range_test.start_lr", True),
    ("range_test.end_lr = inf", "range_test.end_lr", float("inf")),
    ("range_test.num_iter = 4", "range_test.num_iter", 4),
    ("range_test.num_iter = 100.0", "range_test.num_iter", 100.0),
    ("range_test.repeats = 0", "range_test.repeats", 0),
    ("range_test.redo = -1", "range_test.redo", -1),
    ("range_test = 3", "range_test", 3),
    ("task = 3", "task", 3),
    ('task = ""', "task", ""),
]


@pytest.mark.parametrize(("line", "key", "value"), BAD_VALUES)
def test_bad_values_name_the_key_and_the_value(
    line: str, key: str, value: object, tmp_path: Path
) -> None:
    # A later "task = ..." would be a duplicate TOML key, so the bad task replaces the line.
    task = "" if line.startswith("task ") else 'task = "digits"\n'
    path = write_config(tmp_path, "t", f"{task}{line}\n")
    with invalid(key, value) as info:  # NaN included: its repr is 'nan'
        load_config("t", path=path)
    assert str(path) in str(info.value)
    one_line(info)


def test_a_huge_toml_integer_is_a_bad_value_not_a_crash(tmp_path: Path) -> None:
    # tomllib's integers are unbounded; float() of this one overflows.
    with invalid("timeout") as info:
        load_text(tmp_path, f'task = "digits"\ntimeout = 1{"0" * 400}\n')
    one_line(info)


@pytest.mark.parametrize(
    ("start", "end"), [(1.0, 0.5), (0.1, 0.1), (10.0, 1e-7)], ids=["above", "equal", "far"]
)
def test_range_start_must_be_below_end(start: float, end: float, tmp_path: Path) -> None:
    # The one sentence shape: "must be below range_test.end_lr=END; got START".
    with invalid("range_test.start_lr", end, start) as info:
        load_text(tmp_path, f'task = "digits"\n[range_test]\nstart_lr = {start}\nend_lr = {end}\n')
    assert "range_test.end_lr" in str(info.value)
    one_line(info)


@pytest.mark.parametrize(
    ("body", "key", "suggestion"),
    [
        ('task = "digits"\nn_trail = 5\n', "n_trail", "n_trials"),
        ('task = "digits"\nEpochs = 5\n', "Epochs", "epochs"),
        ('task = "digits"\nrange_start_lr = 1e-5\n', "range_start_lr", "range_test.start_lr"),
        ('task = "digits"\nnum_iters = 50\n', "num_iters", "range_test.num_iter"),
        (
            'task = "digits"\n[range_test]\nstart = 1e-5\n',
            "range_test.start",
            "range_test.start_lr",
        ),
        ('task = "digits"\n"range_test.repeat" = 2\n', "range_test.repeat", "range_test.repeats"),
        ('task = "digits"\n[range_tests]\nstart_lr = 1e-5\n', "range_tests", "range_test"),
        ('task = "digits"\nname = "x"\n', "name", None),
        ('task = "digits"\nsource = "x"\n', "source", None),
        ('task = "digits"\ncolour = "red"\n', "colour", None),
    ],
)
def test_unknown_keys_suggest_the_nearest_valid_one(
    body: str, key: str, suggestion: str | None, tmp_path: Path
) -> None:
    with invalid(key) as info:
        load_text(tmp_path, body)
    message = str(info.value)
    assert "unknown key" in message
    if suggestion is None:  # nothing close: every valid key, and no guess
        assert "did you mean" not in message
        assert "range_test.num_iter" in message and "n_trials" in message
    else:
        assert message.endswith(f"unknown key {key!r} (did you mean {suggestion!r}?)")
    one_line(info)


def test_a_table_where_a_value_belongs_is_a_bad_value(tmp_path: Path) -> None:
    with invalid("sampler") as info:
        load_text(tmp_path, 'task = "digits"\n[sampler]\nkind = "tpe"\n')
    assert "unknown key" not in str(info.value)
    one_line(info)


def test_missing_task_is_named(tmp_path: Path) -> None:
    with invalid("task") as info:
        load_text(tmp_path, "n_trials = 5\n")
    assert "missing" in str(info.value)
    one_line(info)


@pytest.mark.parametrize(
    "body",
    ['task = "digits"\nn_trials = \n', "task = digits\n", 'task = "a"\ntask = "b"\n', "[[x]\n"],
)
def test_invalid_toml_is_a_config_error(body: str, tmp_path: Path) -> None:
    path = write_config(tmp_path, "t", body)
    with pytest.raises(InvalidParameterError, match="not valid TOML") as info:
        load_config("t", path=path)
    assert str(path) in str(info.value)
    one_line(info)


def test_invalid_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_bytes(b'task = "digits"\nname = "\xff"\n')
    with pytest.raises(InvalidParameterError, match="UTF-8") as info:
        load_config("t", path=path)
    assert str(path) in str(info.value)
    one_line(info)


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_unreadable_file_is_a_config_error(kind: str, tmp_path: Path) -> None:
    # A directory is unreadable as a file even for root (chmod 000 is not).
    path = tmp_path / "missing.toml" if kind == "missing" else tmp_path
    with pytest.raises(InvalidParameterError, match="cannot read config") as info:
        load_config("t", path=path)
    assert repr(str(path)) in str(info.value)
    one_line(info)


def test_config_errors_are_value_errors_and_lrsearch_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n_trials") as info:
        load_text(tmp_path, 'task = "digits"\nn_trials = 0\n')
    assert isinstance(info.value, LrsearchError)
    assert isinstance(info.value, InvalidParameterError)


def test_direct_construction_validates_too() -> None:
    with invalid("n_trials", True):
        StudyConfig(name="x", task="digits", n_trials=True)
    with invalid("kinds", ["step", "step"]):
        StudyConfig(name="x", task="digits", kinds=("step", "step"))
    with invalid("study name", "../x"):
        StudyConfig(name="../x", task="digits")
    cfg = StudyConfig(name="x", task="digits", kinds=["step"])  # type: ignore[arg-type]
    assert cfg.kinds == ("step",)


# -- study names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "../x",
        "a/b",
        "a\\b",
        "",
        ".hidden",
        "x" * 65,
        "a..b",
        "..",
        "/abs",
        "-x",
        "a b",
        "a\n",
        "é",
    ],
)
def test_path_tricks_are_not_study_names(name: str, tmp_path: Path) -> None:
    with invalid("study name", name) as info:
        check_study_name(name)
    one_line(info)
    with invalid("study name", name):
        find_config(name)
    with invalid("study name", name):
        load_config(name, path=write_config(tmp_path, "ok", 'task = "digits"\n'))


@pytest.mark.parametrize("name", [None, 3, b"digits"])
def test_a_study_name_must_be_a_string(name: object) -> None:
    with invalid("study name", name):
        check_study_name(name)


@pytest.mark.parametrize("name", ["digits", "a", "x" * 64, "run-2.v1_final", "9lives", "a.b"])
def test_good_study_names_pass_through(name: str) -> None:
    assert check_study_name(name) == name


# -- to_dict ----------------------------------------------------------------------------------


def test_to_dict_is_toml_shaped_and_json_safe() -> None:
    cfg = load_config("digits")
    data = cfg.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert "name" not in data and "source" not in data
    assert data["range_test"] == {
        "start_lr": 1e-7,
        "end_lr": 10.0,
        "num_iter": 100,
        "repeats": 1,
        "redo": 3,
    }
    assert data["kinds"] == list(KINDS)
    assert not any(key.startswith("range_") and key != "range_test" for key in data)
    # None-valued optional keys are left out, the others are all there.
    unset = {"timeout", "epochs", "batch_size", "warmup_epochs"}  # digits.toml sets a budget
    assert not unset & set(data)
    top_level = {key for key in KEYS if "." not in key}
    assert set(data) == (top_level - unset) | {"range_test"}


def test_to_dict_round_trips_through_load_config(tmp_path: Path) -> None:
    body = "".join(f"{key} = {_toml(value)}\n" for key, value in VALID.items())
    cfg = load_text(tmp_path, body)
    data = cfg.to_dict()
    assert data["range_test"] == {
        "start_lr": 1e-6,
        "end_lr": 3.0,
        "num_iter": 50,
        "repeats": 2,
        "redo": 1,
    }
    assert data["timeout"] == 12.5 and data["kinds"] == ["sgdr", "constant"]
    # The stored dict, fed back as overrides over a bare file, rebuilds the same config.
    again = load_text(tmp_path, 'task = "digits"\n', **json.loads(json.dumps(data)))
    assert again == cfg
    rebuilt = StudyConfig(name=cfg.name, task="other").replace(**data)
    assert dataclasses.replace(rebuilt, source=cfg.source) == cfg


def test_reading_a_config_imports_no_torch() -> None:
    # A config is checked before anything heavy is loaded: `lrsearch` and its config module
    # stay torch-free until a name that needs torch is used.
    import subprocess
    import sys

    code = (
        "import sys, lrsearch, lrsearch.config as c; "
        "cfg = c.load_config('digits', overrides={'n_trials': 3}); "
        "assert cfg.n_trials == 3 and 'torch' not in sys.modules, sorted(sys.modules); "
        "lrsearch.Schedule; assert 'torch' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
