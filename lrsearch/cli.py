"""The ``lrsearch`` command. Only this module talks to the terminal.

Every lrsearch error becomes one line on stderr and exit code 2 (``--debug`` shows the
traceback instead); usage errors are click's, also exit code 2.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from lrsearch.choices import DEVICES, PER_EPOCH_KINDS, PRUNERS, SAMPLERS
from lrsearch.exceptions import LrsearchError
from lrsearch.version import __version__

if TYPE_CHECKING:
    from lrsearch.schedules import Schedule
    from lrsearch.space import Setup
    from lrsearch.study import StudyResult

F = TypeVar("F", bound=Callable[..., Any])

_log = logging.getLogger("lrsearch")


class _Context:
    debug: bool = False


def _fail(message: str) -> None:
    click.echo(f"lrsearch: error: {' '.join(str(message).split())}", err=True)
    sys.exit(2)


def _errors(func: F) -> F:
    """Turn an LrsearchError (and a config ValueError) into one line and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context().find_object(_Context)
        try:
            return func(*args, **kwargs)
        except LrsearchError as exc:
            if ctx is not None and ctx.debug:
                raise
            _fail(str(exc))

    return wrapper  # type: ignore[return-value]


STORAGE = click.option(
    "--storage",
    metavar="URL",
    default=None,
    help="Optuna storage URL  [default: sqlite:///studies/lrsearch.db]",
)
DEVICE = click.option("--device", type=click.Choice(DEVICES), default=None)
#: ``lrsearch run``'s budget: the tuning stages are planned to spend at most this.
BUDGET = click.option(
    "--budget",
    type=float,
    default=None,
    metavar="RUNS",
    help="Full runs the tuning may spend at most: plans trials, CV grid and folds, finalists.",
)


def _study_option(text: str) -> Callable[[F], F]:
    """The ``--study NAME`` option (the command's ``name`` argument); ``text``: its help."""
    return click.option("--study", "name", required=True, metavar="NAME", help=text)


STUDY = _study_option("Study name (as given to `run`).")


def _out_option(metavar: str, text: str, *, required: bool = False) -> Callable[[F], F]:
    """The ``--out`` option of a command that writes a file (``text``: its help)."""
    return click.option(
        "--out",
        type=click.Path(path_type=Path),
        default=None,
        required=required,
        metavar=metavar,
        help=text,
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lrsearch")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.option(
    "-v", "--verbose", is_flag=True, help="Log progress (lrsearch and Optuna) to stderr."
)
@click.pass_context
def cli(ctx: click.Context, debug: bool, verbose: bool) -> None:
    """Find a learning rate and a schedule for a PyTorch model, on Optuna.

    \b
    lrsearch run --study digits        range test, pruned search, baselines, comparison
    lrsearch studies                   what the study database holds
    lrsearch range-test --study NAME   only the range test of a study's task
    lrsearch report --study NAME       one HTML page with every figure and table
    lrsearch best --study NAME --steps-per-epoch N --epochs E   train with the winner
    lrsearch export --study NAME --out runs.csv   every run as CSV
    lrsearch dashboard                 optuna-dashboard on the study database
    """
    state = ctx.ensure_object(_Context)
    state.debug = debug
    import optuna

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")
    optuna.logging.set_verbosity(optuna.logging.INFO if verbose else optuna.logging.WARNING)


class _Bars:
    """One tqdm bar per pipeline stage, on stderr; silent when stderr is not a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bars: dict[str, Any] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(total=total, desc=f"{stage:>16}", unit="", leave=True)
        bar.total = total
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()

    def __enter__(self) -> _Bars:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@cli.command()
@_study_option("Study name; its config is studies/NAME.toml (cwd first, then packaged).")
@STORAGE
@click.option(
    "--n-trials",
    type=click.IntRange(min=1),
    default=None,
    help="Search trials in total (a resumed study runs the missing ones).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="S",
    help="Start no new search trial after S seconds.",
)
@BUDGET
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=None,
    help="Seed of sampler, splits, range test and inits.",
)
@click.option("--pruner", type=click.Choice(PRUNERS), default=None)
@click.option("--sampler", type=click.Choice(SAMPLERS), default=None)
@DEVICE
@click.option(
    "--epochs", type=click.IntRange(min=1), default=None, help="Epochs of every training run."
)
@click.option("--fresh", is_flag=True, help="Delete the study (and its baselines) and start over.")
@click.option(
    "--skip-baselines", is_flag=True, help="Search only: no baselines, no final comparison."
)
@_errors
def run(
    name: str,
    storage: str | None,
    n_trials: int | None,
    timeout: float | None,
    budget: float | None,
    seed: int | None,
    pruner: str | None,
    sampler: str | None,
    device: str | None,
    epochs: int | None,
    fresh: bool,
    skip_baselines: bool,
) -> None:
    """Run (or resume) study NAME: range test, seeded pruned search, baselines, comparison.

    Running the same command again continues the study up to --n-trials in total, reusing its
    range test; a finished study just prints its summary.
    """
    from lrsearch.study import run_study

    overrides = {
        "n_trials": n_trials,
        "timeout": timeout,
        "budget": budget,
        "seed": seed,
        "pruner": pruner,
        "sampler": sampler,
        "device": device,
        "epochs": epochs,
    }
    with _Bars(sys.stderr.isatty()) as bars:
        result = run_study(
            name,
            storage=storage,
            overrides=overrides,
            fresh=fresh,
            skip_baselines=skip_baselines,
            progress=bars,
        )
    _print_plan(name, storage)
    _print_result(result)


def _print_plan(name: str, storage: str | None) -> None:
    """The budget's plan in one line, when the study has a budget."""
    from lrsearch.pipeline.budget import stored_plan
    from lrsearch.store import load_stored

    planned = stored_plan(load_stored(name, storage=storage).attrs)
    if planned is not None:
        click.echo(planned.describe())


def _print_result(result: Any) -> None:
    import pandas as pd

    rt = result.range_test
    states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(result.trial_states.items()))
    click.echo(f"study {result.name} in {result.storage}")
    first = [row for row in result.bounds_history if row["optimizer"] == result.optimizer]
    unread = " (could not be read: not used)" if first and first[0]["cause"] == "wide" else ""
    click.echo(
        f"range test{unread}: LR bounds {rt.bounds.low:.3g} .. {rt.bounds.high:.3g}, "
        f"suggestion {rt.suggestion:.3g}"
    )
    if first and (first[0]["cause"] != "range-test" or len(first) > 1):
        from lrsearch.pipeline.bounds import CAUSES

        grown = f", widened {len(first) - 1} time(s)" if len(first) > 1 else ""
        click.echo(
            f"searched LR range: {first[-1]['low']:.3g} .. {first[-1]['high']:.3g} "
            f"(from {CAUSES[first[0]['cause']]}{grown})"
        )
    short = "" if result.best_epochs is None else f" after {result.best_epochs} epochs"
    click.echo(
        f"search: {states}; tuned arm: trial #{result.tuned_trial}, validation "
        f"{result.metric} {result.best_value:.4f}{short}"
    )
    click.echo(f"tuned schedule: {result.schedule_words}")
    if result.constant_lr is not None:
        click.echo(f"constant LR chosen by CV: {result.constant_lr:.3g}")
    table = result.table()
    if not table.empty:
        click.echo("")
        click.echo(f"final comparison on the held-out test set ({_seeds(result)} seeds per arm):")
        with pd.option_context("display.width", 200, "display.max_colwidth", 80):
            click.echo(table.to_string(index=False))
        click.echo("")
        click.echo(result.verdict())
    if result.cost is not None:
        click.echo("")
        click.echo(f"cost: {result.cost.describe()}")
    if result.warnings:
        click.echo("")
    for warning in result.warnings:
        click.echo(warning.line())
    from lrsearch.store import DEFAULT_STORAGE

    where = "" if result.storage == DEFAULT_STORAGE else f" --storage {result.storage}"
    click.echo(f"\nlook at it: lrsearch report --study {result.name}{where}")
    click.echo(f"        or: lrsearch dashboard{where}")


def _seeds(result: StudyResult) -> int:
    tuned = result.arms.get("tuned")
    return 0 if tuned is None else len(tuned.test_metric_per_seed)


@cli.command()
@STORAGE
@_errors
def studies(storage: str | None) -> None:
    """List the studies in the storage, with their trial states."""
    import pandas as pd

    from lrsearch.store import DEFAULT_STORAGE, list_studies, mask_url

    frame = list_studies(storage)
    if frame.empty:
        click.echo(f"no studies in {mask_url(storage or DEFAULT_STORAGE)}")
        return
    with pd.option_context("display.width", 200):
        click.echo(frame.to_string(index=False))


@cli.command("range-test")
@_study_option("Study whose task and range_test settings to use.")
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the curve as an HTML file (plotly).",
)
@click.option(
    "--repeats",
    type=click.IntRange(min=1),
    default=None,
    help="Sweeps with different seeds (medians).",
)
@DEVICE
@_errors
def range_test_command(
    name: str, plot: Path | None, repeats: int | None, device: str | None
) -> None:
    """Run only the LR range test of study NAME's task and print what it reads.

    Nothing is stored; `lrsearch run` runs (and stores) the same test itself.
    """
    from lrsearch.pipeline import run_range_test

    if plot is not None:
        _check_out(plot, "--plot")
    result = run_range_test(name, overrides={"range_test.repeats": repeats, "device": device})
    click.echo(f"bounds:     {result.bounds.low:.3g} .. {result.bounds.high:.3g}")
    click.echo(f"suggestion: {result.suggestion:.3g}")
    click.echo(f"steps run:  {result.num_iter_run} of {result.num_iter}")
    for line in result.advice:
        click.echo(f"note: {line}")
    for doubt in result.doubts:
        click.echo(
            f"warning: {doubt.text}: the reading is doubtful (`lrsearch run` redoes it longer, "
            "and searches the optimizer's plausible span if it stays doubtful)"
        )
    if plot is not None:
        result.figure().write_html(plot, include_plotlyjs=True)
        click.echo(f"plot: {plot}")


def _check_out(out: Path, option: str = "--out") -> None:
    if out.is_dir():
        raise LrsearchError(f"{option}: {str(out)!r} is a folder; give a file name")
    if not out.parent.is_dir():
        raise LrsearchError(f"{option}: folder {str(out.parent)!r} does not exist")


def _write_atomically(out: Path, text: str) -> None:
    """Write ``text`` to ``out`` through a temporary file, so a failure leaves no half file."""
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@cli.command()
@STUDY
@STORAGE
@_out_option("PATH", "HTML file to write  [default: NAME-report.html]")
@_errors
def report(name: str, storage: str | None, out: Path | None) -> None:
    """Write study NAME as one self-contained HTML page (opens offline).

    Range test, schedules of the top trials, validation curves (pruned ones marked), the final
    comparison with per-seed points and intervals, Optuna's importances and parallel
    coordinates, tables of the top trials, the arms and the settings.
    """
    from lrsearch.report import report_html
    from lrsearch.store import load_stored

    out = out if out is not None else Path(f"{name}-report.html")
    _check_out(out)
    text = report_html(load_stored(name, storage=storage))
    _write_atomically(out, text)
    click.echo(f"report: {out}")


@cli.command()
@STUDY
@STORAGE
@_out_option("FILE.csv", "CSV file to write.", required=True)
@_errors
def export(name: str, storage: str | None, out: Path) -> None:
    """Write every run of study NAME as CSV: search trials, baseline trials, final runs.

    One row per search trial (schedule parameters flattened, state, value, pruned reason), per
    constant-cv and Adam trial, and per final-comparison run (arm x seed). The columns are
    listed in docs/results.md and in lrsearch.export.export_frame.
    """
    from lrsearch.report import export_frame

    _check_out(out)
    frame = export_frame(name, storage=storage)
    _write_atomically(out, frame.to_csv(index=False))
    click.echo(f"{len(frame)} rows: {out}")
    from lrsearch.pipeline import StudyWarning
    from lrsearch.store import ATTR_WARNINGS

    for warning in frame.attrs.get(ATTR_WARNINGS, []):
        click.echo(StudyWarning.from_dict(warning).line(), err=True)


@cli.command()
@STUDY
@STORAGE
@click.option(
    "--steps-per-epoch",
    type=click.IntRange(min=1),
    required=True,
    metavar="N",
    help="Optimizer steps in one epoch of your run (batches / gradient accumulation, rounded up).",
)
@click.option(
    "--epochs", type=click.IntRange(min=1), required=True, metavar="E", help="Epochs of your run."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["python", "json"]),
    default="python",
    show_default=True,
    help="Python code that builds optimizer and scheduler, or the schedule's fields as JSON.",
)
@_errors
def best(name: str, storage: str | None, steps_per_epoch: int, epochs: int, fmt: str) -> None:
    """Print study NAME's tuned optimizer and schedule for a run of your own.

    The study stores step sizes and warm-ups in epochs; --steps-per-epoch and --epochs put them
    in your run's optimizer steps (StudyResult.schedule_for in Python). Step the scheduler once
    after every optimizer step (a plateau schedule: once per epoch with the metric).
    """
    from lrsearch.study import load_result

    result = load_result(name, storage=storage)
    setup = result.setup_for(steps_per_epoch=steps_per_epoch, epochs=epochs)
    if fmt == "json":
        click.echo(_best_json(result, setup, steps_per_epoch, epochs))
    else:
        click.echo(_best_python(result, setup, steps_per_epoch, epochs))


def _best_json(result: StudyResult, setup: Setup, steps_per_epoch: int, epochs: int) -> str:
    import json

    record = {
        "study": result.name,
        "trial": result.tuned_trial,
        "metric": result.metric,
        "value": result.best_value,
        "steps_per_epoch": steps_per_epoch,
        "epochs": epochs,
        "total_steps": steps_per_epoch * epochs,
        "optimizer": setup.optimizer,
        "weight_decay": setup.weight_decay,
        "schedule": setup.schedule.to_dict(),
    }
    return json.dumps(record, indent=2)


#: How each searched optimizer is made (lrsearch.optimizers.search_optimizer), as code.
_OPTIMIZER_CODE = {
    "sgd": ("import torch", "torch.optim.SGD({params}, lr={lr}, momentum=0.9)"),
    "nesterov": (
        "import torch",
        "torch.optim.SGD({params}, lr={lr}, momentum=0.9, nesterov=True)",
    ),
    "adamw": ("from lrsearch.tasks import adamw", "adamw(weight_decay={decay!r})({params}, {lr})"),
}


def _best_python(result: StudyResult, setup: Setup, steps_per_epoch: int, epochs: int) -> str:
    """Code that makes the tuned optimizer and scheduler for ``model``, under three comment
    lines saying where it comes from."""
    schedule = setup.schedule
    total = steps_per_epoch * epochs
    header = [
        f"# study {result.name}, trial #{result.tuned_trial}: validation {result.metric} "
        f"{result.best_value:.4f}",
        f"# {setup.describe(steps_per_epoch)}",
        f"# for {steps_per_epoch} optimizer steps per epoch and {epochs} epochs ({total} steps)",
    ]
    imports = ["from lrsearch import Schedule"]
    code = [f"schedule = {_schedule_code(schedule)}"]
    if setup.optimizer in _OPTIMIZER_CODE:
        module, make = _OPTIMIZER_CODE[setup.optimizer]
        imports.insert(0 if module.startswith("import ") else 1, module)
        made = make.format(
            params="model.parameters()", lr="schedule.max_lr", decay=setup.weight_decay
        )
        code.append(f"optimizer = {made}")
    else:
        code.append("# optimizer: your task's own (the study tuned the schedule of its optimizer)")
    if schedule.kind in PER_EPOCH_KINDS:
        maximize = result.direction == "maximize"
        code.append(
            f"scheduler = schedule.build(optimizer, total_steps={total}, maximize={maximize})"
        )
        code.append(f"# once per epoch: scheduler.step(validation {result.metric})")
    else:
        code.append(f"scheduler = schedule.build(optimizer, total_steps={total})")
        code.append("# after every optimizer.step(): scheduler.step()")
    return "\n".join([*header, *imports, "", *code])


def _schedule_code(schedule: Schedule) -> str:
    """A ``Schedule(...)`` call that evaluates to ``schedule``: its kind and every field that
    differs from the default."""
    import dataclasses

    fields = dataclasses.fields(schedule)
    args = [f'"{schedule.kind}"']  # a name from KINDS: no quoting to escape
    for field in fields[1:]:
        value = getattr(schedule, field.name)
        if value != field.default:
            args.append(f"{field.name}={value!r}")
    return f"Schedule({', '.join(args)})"


@cli.command()
@STORAGE
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (loopback: only this machine can connect).",
)
@click.option(
    "--port", type=click.IntRange(1, 65535), default=8080, show_default=True, help="Port."
)
@_errors
def dashboard(storage: str | None, host: str, port: int) -> None:
    """Start optuna-dashboard on the study database (stop it with Ctrl-C).

    Each study page shows the range-test and comparison graphs and the note that `lrsearch run`
    saved; the trials table has each trial's schedule in words (user attr `schedule`).
    """
    import socket

    from optuna_dashboard import run_server

    from lrsearch.store import DEFAULT_STORAGE, mask_url, open_storage

    store = open_storage(storage, create=False)
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise LrsearchError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    url_host = f"[{host}]" if ":" in host else host
    click.echo(
        f"optuna-dashboard on {mask_url(storage or DEFAULT_STORAGE)}: "
        f"http://{url_host}:{port}/dashboard/  (Ctrl-C stops it)"
    )
    try:
        run_server(store, host=host, port=port)
    except OSError as exc:
        raise LrsearchError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def main() -> None:
    """Entry point of the ``lrsearch`` console script."""
    cli()
