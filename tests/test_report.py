"""Tests for lrsearch/report.py: the figures hold what the study stored, the HTML report opens in
headless Chromium with no JavaScript error and every figure drawn, and optuna-dashboard (started
by ``lrsearch dashboard``) shows the range-test graph, the comparison graph and the note that
``run_study`` saved.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tiny_task
from click.testing import CliRunner
from optuna.trial import TrialState

from lrsearch.choices import ARMS, SNAPSHOT_ARM
from lrsearch.cli import cli
from lrsearch.diagnostics import NON_FINITE, TOO_HIGH, TOO_LOW
from lrsearch.pipeline import load_result
from lrsearch.report import (
    DASHBOARD_GRAPHS,
    attach_to_dashboard,
    bounds_table,
    comparison_figure,
    cost_table,
    diagnostics_table,
    learning_curves_figure,
    note_markdown,
    report_html,
    schedules_figure,
    search_steps_per_epoch,
)
from lrsearch.report.reading import cause, read
from lrsearch.schedules import Schedule
from lrsearch.store import (
    ATTR_CONFIG,
    ATTR_STEPS_PER_EPOCH,
    EPOCH_LRS,
    LR_MEAN,
    LR_PEAK,
    PRUNED_REASON,
    SCHEDULE,
    SEARCH,
    STOP_CODES,
    TUNING_STAGES,
    VERIFICATION_STAGES,
    ArmResult,
    StopReason,
    StoredStudy,
    load_stored,
    top_trials,
)
from lrsearch.study import run_study

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

#: Figures of a full report: range test, schedules, learning curves, comparison, importances,
#: parallel coordinates, update/weight ratio. Without baselines there is no comparison figure.
FULL_FIGURES = 7
PLOT_DATA = "dashboard:plot_data:"


def _url(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One database with study ``tiny`` (the whole pipeline) and ``tinysearch`` (search only)."""
    url = _url(tmp_path_factory.mktemp("report") / "studies.db")
    run_study(tiny_task.config(n_trials=8, warmup_epochs=1), storage=url)
    run_study(tiny_task.config("tinysearch", n_trials=5), storage=url, skip_baselines=True)
    return url


@pytest.fixture(scope="module")
def full(url: str) -> StoredStudy:
    return load_stored("tiny", storage=url)


@pytest.fixture(scope="module")
def comparison(url: str) -> dict[str, Any]:
    """Study ``tiny``'s final comparison, as ``load_result`` derives it from the final runs."""
    found = load_result("tiny", storage=url).comparison
    assert found is not None
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --- figures hold the stored numbers ---------------------------------------------------------


def test_comparison_figure_shows_every_seed_the_interval_and_the_target(
    comparison: dict[str, Any],
) -> None:
    fig = comparison_figure(comparison, metric="accuracy")
    for arm in ARMS:
        data = comparison[arm]
        (seeds,) = [t for t in fig.data if t.name == f"{arm}: per seed"]
        assert list(seeds.y) == pytest.approx(data["test_metric_per_seed"])
        (mean,) = [t for t in fig.data if t.name == f"{arm}: mean"]
        assert mean.y[0] == pytest.approx(np.mean(data["test_metric_per_seed"]))
        low = mean.y[0] - mean.error_y.arrayminus[0]
        high = mean.y[0] + mean.error_y.array[0]
        # A 95% interval of the mean holds the mean, and is wider than the seeds' spread
        # around it for two seeds (t = 12.7).
        assert low <= mean.y[0] <= high
        if np.std(data["test_metric_per_seed"]) > 0:
            assert low < min(data["test_metric_per_seed"]) or high > max(
                data["test_metric_per_seed"]
            )
        (curve,) = [t for t in fig.data if t.name == arm]
        assert list(curve.y) == pytest.approx(data["test_curve_mean"])
        assert list(curve.x) == list(range(1, len(data["test_curve_mean"]) + 1))
        stars = [t for t in fig.data if t.name == f"{arm} reaches the target"]
        reached = data["epochs_to_target"]
        assert len(stars) == (reached is not None)
        if reached is not None:
            assert list(stars[0].x) == [reached]
            assert stars[0].y[0] == pytest.approx(data["test_curve_mean"][reached - 1])
    target = comparison["constant-cv"]["test_metric_mean"]
    (line,) = [s for s in fig.layout.shapes if s.type == "line"]
    assert line.y0 == line.y1 == pytest.approx(target)
    assert fig.layout.title.text and fig.layout.xaxis.title.text == "arm"
    assert fig.layout.yaxis.title.text == "test accuracy"
    # One panel each, for the dashboard's half-width cards.
    seeds = comparison_figure(comparison, metric="accuracy", panels=("seeds",))
    assert {t.name.split(": ")[1] for t in seeds.data} == {"per seed", "mean"}
    assert len(seeds.data) == 2 * len(comparison) and not seeds.layout.shapes
    curves = comparison_figure(comparison, metric="accuracy", panels=("curves",))
    assert {t.name for t in curves.data} >= set(ARMS)
    assert not [t for t in curves.data if ": " in t.name]
    assert len(curves.layout.shapes) == 1 and curves.layout.xaxis.title.text == "epoch"
    with pytest.raises(ValueError, match="panels must be some of"):
        comparison_figure(comparison, panels=("bars",))


def _every_arm_comparison() -> dict[str, Any]:
    """A comparison with every arm the figures may draw, the snapshot ensemble included."""
    arms = (*ARMS, SNAPSHOT_ARM)
    target = 0.8
    out: dict[str, Any] = {}
    for i, arm in enumerate(arms):
        curve = [0.5 + 0.1 * e + 0.01 * i for e in range(4)]
        out[arm] = _arm(
            test_metric_per_seed=[curve[-1] - 0.01, curve[-1] + 0.01],
            test_metric_mean=curve[-1],
            test_curve_mean=curve,
            epochs_to_target=next((e + 1 for e, v in enumerate(curve) if v >= target), None),
            target=target,
        )
    return out


def _arm(**fields: Any) -> ArmResult:
    """An arm of a made-up comparison: two seeds of four epochs, ``fields`` changed."""
    per_seed = fields.get("test_metric_per_seed", [0.9, 0.9])
    made = {
        "test_metric_mean": float(np.mean(per_seed)),
        "test_metric_std": 0.0,
        "test_metric_per_seed": per_seed,
        "test_curve_mean": [0.9] * 4,
        "test_curve_per_seed": [[0.9] * 4 for _ in per_seed],
        "epochs": 4,
        "steps": 40,
        "params": {"lr": 0.1},
        "schedule": "constant 0.1",
        "optimizer": "task",
        "seeds": [1000 + s for s in range(len(per_seed))],
        "stop_reasons": [None] * len(per_seed),
        "train_seconds": 1.0,
    }
    return ArmResult(**(made | fields))


def _trace_colour(trace: Any) -> str:
    return str(trace.line.color if trace.mode == "lines" else trace.marker.color)


def test_every_arm_has_its_own_colour_the_same_in_every_panel() -> None:
    comparison = _every_arm_comparison()
    arms = list(comparison)
    fig = comparison_figure(comparison, metric="accuracy")
    # Each arm's traces in both panels: seeds, mean, curve and the target's star.
    colours: dict[str, set[str]] = {}
    for trace in fig.data:
        colours.setdefault(trace.legendgroup, set()).add(_trace_colour(trace))
    assert set(colours) == set(arms)
    for arm in arms:
        names = {t.name for t in fig.data if t.legendgroup == arm}
        assert names == {f"{arm}: per seed", f"{arm}: mean", arm, f"{arm} reaches the target"}
        assert len(colours[arm]) == 1, (arm, colours[arm])  # one colour across the panels
    one_each = [next(iter(colours[arm])) for arm in arms]
    assert len(set(one_each)) == len(arms), dict(zip(arms, one_each, strict=True))
    # The one-panel figures (the dashboard's cards) keep each arm's colour.
    for panel in ("seeds", "curves"):
        single = comparison_figure(comparison, metric="accuracy", panels=(panel,))
        for trace in single.data:
            assert _trace_colour(trace) in colours[trace.legendgroup]


def test_schedules_figure_draws_the_top_trials_as_trained(
    full: StoredStudy, comparison: dict[str, Any]
) -> None:
    study = full.search
    spe = search_steps_per_epoch(full)
    assert spe == full.attrs[ATTR_STEPS_PER_EPOCH][SEARCH]
    epochs = full.attrs[ATTR_CONFIG]["epochs"]
    fig = schedules_figure(full, top=3)
    top = top_trials(study, 3)
    assert 1 <= len(top) <= 3
    assert [t.value for t in top] == sorted((t.value for t in top), reverse=True)
    lines = [t for t in fig.data if t.name.startswith("#")]
    assert len(lines) == len(top)
    for trial, line in zip(top, lines, strict=True):
        assert line.name.startswith(f"#{trial.number} {trial.params['schedule']}")
        want = Schedule.from_params(trial.params, steps_per_epoch=spe, epochs=epochs).lrs(
            spe * epochs
        )
        np.testing.assert_allclose(np.asarray(line.y), want)
    for trial in study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED)):
        lrs = Schedule.from_params(trial.params, steps_per_epoch=spe, epochs=epochs).lrs(
            spe * epochs
        )
        assert trial.user_attrs[LR_PEAK] == pytest.approx(lrs.max())
        assert trial.user_attrs[LR_MEAN] == pytest.approx(lrs.mean())
    tuned = [t for t in fig.data if t.name.endswith("(tuned arm)")]
    assert len(tuned) <= 1
    constant = comparison["constant-cv"]["params"]["lr"]
    (dashed,) = [t for t in fig.data if t.name.startswith("constant-cv LR")]
    assert list(dashed.y) == [constant, constant]
    assert fig.layout.yaxis.type == "log"
    assert "training step" in fig.layout.xaxis.title.text


def test_learning_curves_mark_pruned_trials(full: StoredStudy) -> None:
    study = full.search
    fig = learning_curves_figure(full)
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    drawn = [t for t in finished if any(math.isfinite(v) for v in t.intermediate_values.values())]
    assert len(fig.data) == len(drawn)
    by_trial = {t.hovertemplate.split(" ", 2)[1]: t for t in fig.data}
    for trial in drawn:
        trace = by_trial[str(trial.number)]
        assert list(trace.x) == sorted(trial.intermediate_values)
        assert list(trace.y) == [trial.intermediate_values[e] for e in trace.x]
        if trial.state == TrialState.PRUNED:
            assert trace.name == "pruned" and trace.line.dash == "dot"
            assert trace.marker.symbol == "x"
        else:
            assert trace.line.dash is None
    assert fig.layout.yaxis.title.text == "validation accuracy"


def test_the_note_holds_the_comparison_and_the_winning_schedule(
    full: StoredStudy, comparison: dict[str, Any]
) -> None:
    study = full.search
    note = note_markdown(full)
    assert note.startswith("## lrsearch: study `tiny`")
    assert f"**Winning schedule:** {comparison['tuned']['schedule']}." in note
    rows = [line for line in note.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + len(comparison)  # header and one row per arm
    target = comparison["constant-cv"]["test_metric_mean"]
    assert f"epochs to {target:.4f} (constant-cv)" in [c.strip() for c in rows[0].split("|")]
    for arm in ARMS:
        data = comparison[arm]
        (row,) = [r for r in rows if r.startswith(f"| {arm} ")]
        assert f"{data['test_metric_mean']:.4f} ± {data['test_metric_std']:.4f}" in row
    states = {s: sum(t.state == s for t in study.trials) for s in (TrialState.COMPLETE,)}
    assert f"{states[TrialState.COMPLETE]} complete" in note


@pytest.mark.parametrize("name", ["tiny", "tinysearch"])
def test_the_report_and_the_note_show_the_cost(url: str, name: str) -> None:
    stored = load_stored(name, storage=url)
    cost = load_result(name, storage=url).cost
    assert cost is not None and cost.recorded
    assert f"**Cost:** {cost.describe()}." in note_markdown(stored)
    page = report_html(stored)
    assert f"<b>Cost:</b> {escape(cost.describe())}.</li>" in page
    assert "<h3>What it cost: the optimizer steps of every unit, in full runs</h3>" in page
    table = cost_table(stored)
    totals = table[table["stage"] == "all"]
    assert list(totals["part"]) == ["tuning", "verification"]
    assert list(totals["optimizer steps"]) == [
        cost.steps(*TUNING_STAGES),
        cost.steps(*VERIFICATION_STAGES),
    ]
    assert list(totals["full runs"]) == [round(cost.tuning, 2), round(cost.verification, 2)]
    stages = table[table["stage"] != "all"]
    assert stages["optimizer steps"].sum() == cost.steps() > 0
    assert stages["units"].sum() == cost.units()
    if name == "tinysearch":  # search only: nothing verified it
        assert list(stages["stage"]) == ["range test", "search"]
        assert cost.verification == 0


def test_run_study_saved_the_graphs_once_and_naming_the_metric(full: StoredStudy) -> None:
    study = full.search
    assert study.metric_names == ["validation accuracy"]

    def graph_keys() -> set[str]:
        attrs = study._storage.get_study_system_attrs(study._study_id)
        return {k.split(":")[2] for k in attrs if k.startswith(PLOT_DATA) and attrs[k]}

    assert graph_keys() == set(DASHBOARD_GRAPHS.values())
    attach_to_dashboard(full)  # again: replaced under the same ids, not added
    assert graph_keys() == set(DASHBOARD_GRAPHS.values())


# --- the HTML report in a real browser -------------------------------------------------------


def _open(context: Any, target: str) -> tuple[Any, list[str]]:
    """A new page of browser ``context`` at ``target``, and the list its JavaScript errors are
    collected into."""
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None,
    )
    page.on("requestfailed", lambda req: errors.append(f"request failed: {req.url}"))
    page.goto(target)
    return page, errors


def _report(url: str, name: str, out: Path) -> str:
    result = CliRunner().invoke(
        cli, ["report", "--study", name, "--storage", url, "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == f"report: {out}\n"
    return out.read_text(encoding="utf-8")


@pytest.mark.parametrize(("name", "figures"), [("tiny", FULL_FIGURES), ("tinysearch", 6)])
def test_report_opens_offline_with_every_figure_and_no_js_error(
    browser: Any, url: str, tmp_path: Path, name: str, figures: int
) -> None:
    out = tmp_path / "report.html"
    text = _report(url, name, out)
    # Self-contained: no script, style or image is fetched from anywhere.
    assert "<script src" not in text and 'src="http' not in text and "<link" not in text
    context = browser.new_context(offline=True, viewport={"width": 1280, "height": 900})
    try:
        page, errors = _open(context, out.as_uri())
        page.wait_for_function(
            f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {figures}",
            timeout=30_000,
        )
        drawn = page.locator(".js-plotly-plot")
        assert drawn.count() == figures
        titles = [t.strip() for t in page.locator(".js-plotly-plot .gtitle").all_text_contents()]
        assert len(titles) == figures and all(titles)
        assert titles[0].startswith("LR range test: suggestion")
        assert any(t.startswith("LR schedules of the top") for t in titles)
        assert any(t.startswith("Validation accuracy of the search trials") for t in titles)
        # Log-LR axes: plotly draws a log axis's ticks with SI suffixes / powers of ten.
        range_test_ticks = page.locator("#fig-range-test .xtick").all_text_contents()
        assert any("µ" in t or "n" in t for t in range_test_ticks), range_test_ticks
        # Comparison (full study only), top trials, settings, the trials the diagnostics
        # have something to say about (when any), history.
        stored = load_stored(name, storage=url)
        diagnosed = not diagnostics_table(stored).empty
        snapshots = SNAPSHOT_ARM in (load_result(name, storage=url).comparison or {})
        bounds = not bounds_table(stored).empty  # the searched range, step by step
        # ... and what each stage cost.
        tables = (5 if name == "tiny" else 4) + diagnosed + snapshots + bounds
        assert page.locator("table.dataframe").count() == tables
        history = page.locator("table.dataframe").last.inner_text()
        assert "finished" in history and "range_test 1" in history
        if name == "tiny":
            assert any(t.startswith("Final comparison") for t in titles)
            # The comparison's table comes after the searched range's, when the study has one.
            first_comparison = page.locator("table.dataframe").nth(int(bounds))
            assert first_comparison.inner_text().count("constant-cv") >= 1
        if bounds:
            steps = page.locator("table.dataframe").first.inner_text()
            widened = len(bounds_table(stored)) > 1
            assert "the range test" in steps and ("widened" in steps) == widened
        else:
            assert page.get_by_text("no final comparison").count() == 1
        assert errors == []
    finally:
        context.close()


def test_report_in_python_matches_the_cli(url: str, full: StoredStudy, tmp_path: Path) -> None:
    html = report_html(full)
    cli_html = _report(url, "tiny", tmp_path / "r.html")
    # Same page but the time it was made.
    strip = [line for line in html.splitlines() if 'class="meta"' not in line]
    assert strip == [line for line in cli_html.splitlines() if 'class="meta"' not in line]


def test_report_default_out_and_bad_input(url: str, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(cli, ["report", "--study", "tiny", "--storage", url])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "tiny-report.html").is_file()
    # Readable by whoever the umask lets read it, like any file the user writes.
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "tiny-report.html").stat().st_mode & 0o777 == 0o666 & ~umask
    before = sorted(p.name for p in tmp_path.iterdir())
    for args, message in (
        (["--study", "missing"], f"no study 'missing' in {url}"),
        (["--study", "tiny", "--out", "nodir/r.html"], "--out: folder 'nodir' does not exist"),
        (["--study", "tiny", "--out", "."], "--out: '.' is a folder; give a file name"),
        (["--study", "../x"], "study name must be"),
    ):
        bad = runner.invoke(cli, ["report", "--storage", url, *args])
        assert bad.exit_code == 2, bad.output
        assert len(bad.stderr.splitlines()) == 1
        assert bad.stderr.startswith("lrsearch: error: ")
        assert message in bad.stderr
    missing_db = runner.invoke(cli, ["report", "--study", "tiny"])  # default storage: none here
    assert missing_db.exit_code == 2
    assert missing_db.stderr == (
        "lrsearch: error: no study database at sqlite:///studies/lrsearch.db\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# --- optuna-dashboard in a real browser ------------------------------------------------------


@pytest.fixture
def dashboard(url: str) -> Iterator[str]:
    """``lrsearch dashboard`` on the test database, on a free loopback port; its base URL."""
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from lrsearch.cli import main; main()",
            "dashboard",
            "--storage",
            url,
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/studies", timeout=5) as r:
                    json.load(r)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    out = proc.communicate()[0]
                    pytest.fail(f"lrsearch dashboard did not start:\n{out}")
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_dashboard_shows_the_range_test_the_comparison_and_the_note(
    browser: Any, dashboard: str, full: StoredStudy, comparison: dict[str, Any]
) -> None:
    study_id = full.search._study_id
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page, errors = _open(context, f"{dashboard}/dashboard/studies/{study_id}")
        range_test = page.locator(".js-plotly-plot").filter(has_text="LR range test: suggestion")
        range_test.first.wait_for(timeout=30_000)
        assert range_test.count() == 1
        # The figure itself is drawn: the smoothed curve and the raw points are SVG paths.
        assert range_test.locator(".scatterlayer .trace").count() >= 2
        drawn = page.locator(".js-plotly-plot").filter(has_text="Final comparison")
        assert drawn.count() == 2  # the per-seed scores and the test curves
        # The objective has its name instead of "Objective 0".
        assert page.get_by_text("validation accuracy").count() >= 1

        page.goto(f"{dashboard}/dashboard/studies/{study_id}/note")
        winning = page.get_by_text("Winning schedule:")
        winning.wait_for(timeout=30_000)
        tuned = comparison["tuned"]
        assert page.get_by_text(tuned["schedule"]).count() >= 1
        table = page.locator("table").filter(has_text="constant-cv")
        assert table.count() == 1
        assert table.locator("tr").count() == 1 + len(comparison)

        # Each search trial's schedule in words is a column of the trials table (Smart
        # Selection page); its numeric summaries are sortable columns.
        page.goto(f"{dashboard}/dashboard/studies/{study_id}/smartSelection")
        header = page.locator("th").filter(has_text="UserAttribute schedule")
        header.first.wait_for(timeout=30_000)
        headers = page.locator("th").all_inner_texts()
        for attr in ("lr_peak", "lr_mean"):
            (cell,) = [h for h in headers if h.startswith(f"UserAttribute {attr}")]
            assert "sorted" in cell  # a sort control
        words = full.search.trials[0].user_attrs[SCHEDULE]
        assert page.locator("td").filter(has_text=words).count() >= 1
        assert [e for e in errors if "favicon" not in e] == []
    finally:
        context.close()


def test_dashboard_bad_input_is_one_line(url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(cli, ["dashboard", "--storage", _url(tmp_path / "none.db")])
    assert missing.exit_code == 2
    assert (
        missing.stderr == f"lrsearch: error: no study database at {_url(tmp_path / 'none.db')}\n"
    )
    assert not (tmp_path / "none.db").exists()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = runner.invoke(cli, ["dashboard", "--storage", url, "--port", str(port)])
    assert taken.exit_code == 2
    assert taken.stderr.startswith(f"lrsearch: error: cannot listen on 127.0.0.1:{port}: ")
    assert len(taken.stderr.splitlines()) == 1


def test_a_plateau_trial_is_drawn_as_it_trained(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/p.db"
    run_study(
        tiny_task.config("p", kinds=["plateau"], n_trials=2, epochs=3),
        storage=url,
        skip_baselines=True,
    )
    stored = load_stored("p", storage=url)
    fig = schedules_figure(stored)
    spe = search_steps_per_epoch(stored)
    for trial, trace in zip(top_trials(stored.search, 5), fig.data, strict=False):
        expected = np.repeat(trial.user_attrs[EPOCH_LRS], spe)
        assert list(trace.y) == pytest.approx(list(expected))


# --- diagnostics ------------------------------------------------------------------------------


def test_the_update_ratio_figure_holds_the_range_test_and_the_trials(
    url: str, full: StoredStudy
) -> None:
    from lrsearch.report import update_ratio_figure
    from lrsearch.store import UPDATE_RATIOS, UpdateRatios

    study = full.search
    fig = update_ratio_figure(full)
    assert fig is not None
    sweep = load_result("tiny", storage=url).range_test.sweeps[0]
    assert sweep.update_ratios is not None
    (line,) = [t for t in fig.data if t.name == "range test, group 0"]
    assert list(line.x) == pytest.approx(list(sweep.lrs))
    assert list(line.y) == pytest.approx(list(sweep.update_ratios[0]), nan_ok=True)
    measured = [t for t in study.trials if t.user_attrs.get(UPDATE_RATIOS)]
    assert measured  # every finished search trial stored its ratios
    markers = [t for t in fig.data if t.mode == "markers"]
    assert len(markers) == len(measured)
    for trace, trial in zip(markers, measured, strict=True):
        ratios = UpdateRatios.from_dict(trial.user_attrs[UPDATE_RATIOS])
        assert f"trial {trial.number} " in trace.hovertemplate
        assert list(trace.x) == pytest.approx(ratios.epoch_lrs)
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"


def test_the_report_and_the_note_say_why_runs_stopped(tmp_path: Path) -> None:
    # Two hand-made trials on a study of the tiny database's shape: one NaN, one flat.
    import optuna

    from lrsearch.store import FLAGS

    url = _url(tmp_path / "why.db")
    study = optuna.create_study(study_name="why", storage=url, direction="maximize")
    for reason, flags in (
        (f"non-finite training loss in epoch 2: {NON_FINITE}", []),
        (f"pruner: stopped after epoch 5: {TOO_LOW} (the training loss ...)", ["LR probably"]),
    ):
        trial = study.ask()
        trial.set_user_attr(PRUNED_REASON, reason)
        trial.set_user_attr(FLAGS, flags)
        study.tell(trial, state=TrialState.PRUNED)
    done = study.ask()
    done.set_user_attr(FLAGS, ["LR probably too high for layer group 0: ..."])
    study.tell(done, 0.9)
    stored = load_stored("why", storage=url)
    frame = diagnostics_table(stored)
    assert frame["cause"].tolist() == [NON_FINITE, TOO_LOW, ""]
    assert frame["flags"].tolist() == [
        "",
        "LR probably",
        "LR probably too high for layer group 0: ...",
    ]
    note = note_markdown(stored)
    assert f"**Why search trials stopped early:** 1 x {NON_FINITE}; 1 x {TOO_LOW}." in note
    assert "**Diagnostics of trial #2:** LR probably too high for layer group 0: ...." in note


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("pruned", "the pruner (behind the other trials)"),
        ("stalled", TOO_LOW),
        ("diverged", TOO_HIGH),
        ("non-finite", NON_FINITE),
        ("other", "stopped for a reason of its own"),
    ],
)
def test_the_cause_of_a_stop_is_read_from_its_code(code: str, expected: str) -> None:
    assert set(STOP_CODES) >= {code}
    # The words say nothing the cause could be read from: only the code decides.
    assert cause(StopReason(code, "stopped for a reason of its own")) == expected


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("pruner: stopped after epoch 3", "the pruner (behind the other trials)"),
        (f"pruner: stopped after epoch 5: {TOO_LOW} (the training loss ...)", TOO_LOW),
        (f"diverged in epoch 2: mean loss 9 > 4 x the first loss 1: {TOO_HIGH}", TOO_HIGH),
        (f"non-finite training loss in epoch 3: {NON_FINITE}", NON_FINITE),
        (f"non-finite loss (nan) at step 0: {NON_FINITE}", NON_FINITE),
        ("the unit is not part of the comparison any more", "the unit is not part of ..."),
    ],
)
def test_a_trial_stored_with_words_only_gets_the_same_cause(words: str, expected: str) -> None:
    # Trials stored before the stop codes: the code comes from the words, the cause from it.
    stop = StopReason.from_attrs({PRUNED_REASON: words})
    assert stop is not None and stop.words == words
    if expected.endswith("..."):
        assert stop.code == "other" and cause(stop) == words
    else:
        assert cause(stop) == expected


def test_the_report_of_a_study_under_way_renders(url: str, tmp_path: Path) -> None:
    """A range test and a few search trials, none completed yet, no comparison: the report,
    the note and the dashboard's figures (attached while the search runs) still render."""
    import optuna

    part = _url(tmp_path / "part.db")
    for stage in ("runs", "range-test"):
        optuna.copy_study(
            from_study_name=f"tinysearch/{stage}",
            from_storage=url,
            to_storage=part,
            to_study_name=f"part/{stage}",
        )
    source = load_stored("tinysearch", storage=url).search
    search = optuna.create_study(study_name="part", storage=part, direction="maximize")
    for key, value in source.user_attrs.items():
        search.set_user_attr(key, value)
    for trial in source.get_trials(states=(TrialState.COMPLETE,))[:3]:
        search.add_trial(
            optuna.trial.create_trial(
                state=TrialState.PRUNED,
                params=trial.params,
                distributions=trial.distributions,
                user_attrs=trial.user_attrs | {PRUNED_REASON: "pruner: stopped after epoch 1"},
                intermediate_values={1: trial.intermediate_values[1]},
            )
        )
    stored = load_stored("part", storage=part)
    reading = read(stored)
    assert reading.result is None and reading.arms is None  # no completed trial yet
    assert reading.range_test is not None and reading.tuned_trial is None
    page = report_html(stored)
    assert 'id="fig-range-test"' in page and 'id="fig-schedules"' in page
    assert "no final comparison" in page
    assert "3 x the pruner (behind the other trials)" in page
    note = note_markdown(stored)
    assert "**Range test:** LR bounds" in note and "**Search:** 3 pruned trials." in note
    assert "Winning schedule" not in note and "Best search trial" not in note
    attach_to_dashboard(stored)  # the range test on the dashboard while the search runs


def test_the_report_reads_no_stored_attr_by_its_literal_name() -> None:
    """Every stored attr goes through its name constant (``lrsearch.store``), never a string."""
    import ast

    import lrsearch.report
    from lrsearch.store import names

    stored_names = {getattr(names, n) for n in names.__all__ if isinstance(getattr(names, n), str)}
    found = []
    for path in Path(lrsearch.report.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            key = None
            if isinstance(node, ast.Subscript) and _attrs(node.value):
                key = node.slice
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "get"
                and _attrs(node.func.value)
                and node.args
            ):
                key = node.args[0]
            if isinstance(key, ast.Constant) and key.value in stored_names:
                found.append(f"{path.name}:{node.lineno}: {key.value!r}")
    assert found == []


def _attrs(node: Any) -> bool:
    """Whether ``node`` is some object's ``user_attrs`` / ``attrs``."""
    import ast

    return isinstance(node, ast.Attribute) and node.attr in ("user_attrs", "attrs")


def test_the_report_has_the_diagnostics_section(full: StoredStudy) -> None:
    page = report_html(full)
    assert "8. Diagnostics: the update/weight ratio, and why runs stopped" in page
    assert 'id="fig-update-ratio"' in page


def test_the_report_shows_single_model_against_ensemble_per_seed() -> None:
    from lrsearch.choices import SNAPSHOT_ARM
    from lrsearch.pipeline.comparison import paired_interval
    from lrsearch.report import snapshot_sentence, snapshots_table

    ensemble, last = [0.91, 0.93, 0.92], [0.9, 0.9, 0.91]
    comparison = {
        "tuned": _arm(test_metric_per_seed=[0.9, 0.9, 0.91]),
        SNAPSHOT_ARM: _arm(
            test_metric_per_seed=ensemble,
            last_snapshot_per_seed=last,
            ensemble_minus_last_snapshot=paired_interval(ensemble, last),
        ),
    }
    frame = snapshots_table(comparison, "accuracy")
    assert frame["seed"].tolist() == [1000, 1001, 1002]
    assert frame["tuned: final model (accuracy)"].tolist() == [0.9, 0.9, 0.91]
    assert frame["ensemble"].tolist() == ensemble
    assert frame["ensemble - last snapshot"].tolist() == ["+0.0100", "+0.0300", "+0.0100"]
    assert snapshot_sentence(comparison).startswith(
        "snapshot ensemble - its last snapshot: +0.0167"
    )
    # The same comparison as stored (``StudyResult.comparison``) reads the same.
    stored = {arm: data.to_dict() for arm, data in comparison.items()}
    assert snapshots_table(stored, "accuracy").equals(frame)
    assert snapshot_sentence(stored) == snapshot_sentence(comparison)
    without = {"tuned": comparison["tuned"]}
    assert snapshots_table(without, "accuracy").empty and snapshot_sentence(None) == ""
