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
from typing import Any, TypeVar

import click

from lrsearch import __version__
from lrsearch.exceptions import LrsearchError

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
    optuna-dashboard sqlite:///studies/lrsearch.db   look at it all
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


@cli.command()
@click.option(
    "--study",
    "name",
    required=True,
    metavar="NAME",
    help="Study name; its config is studies/NAME.toml (cwd first, then packaged).",
)
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
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=None,
    help="Seed of sampler, splits, range test and inits.",
)
@click.option("--pruner", type=click.Choice(["median", "hyperband", "none"]), default=None)
@click.option("--sampler", type=click.Choice(["tpe", "random"]), default=None)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None)
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
        "seed": seed,
        "pruner": pruner,
        "sampler": sampler,
        "device": device,
        "epochs": epochs,
    }
    bars = _Bars(sys.stderr.isatty())
    try:
        result = run_study(
            name,
            storage=storage,
            overrides=overrides,
            fresh=fresh,
            skip_baselines=skip_baselines,
            progress=bars,
        )
    finally:
        bars.close()
    _print_result(result)


def _print_result(result: Any) -> None:
    import pandas as pd

    rt = result.range_test
    states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(result.trial_states.items()))
    click.echo(f"study {result.name} in {result.storage}")
    click.echo(
        f"range test: LR bounds {rt.bounds.low:.3g} .. {rt.bounds.high:.3g}, "
        f"suggestion {rt.suggestion:.3g}"
    )
    click.echo(f"search: {states}; best validation {result.metric} {result.best_value:.4f}")
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
    click.echo(f"\nlook at it: optuna-dashboard {result.storage}")


def _seeds(result: Any) -> int:
    arm = (result.comparison or {}).get("tuned", {})
    return len(arm.get("test_metric_per_seed", []))


@cli.command()
@STORAGE
@_errors
def studies(storage: str | None) -> None:
    """List the studies in the storage, with their trial states."""
    import pandas as pd

    from lrsearch.study import DEFAULT_STORAGE, list_studies, mask_url

    frame = list_studies(storage)
    if frame.empty:
        click.echo(f"no studies in {mask_url(storage or DEFAULT_STORAGE)}")
        return
    with pd.option_context("display.width", 200):
        click.echo(frame.to_string(index=False))


@cli.command("range-test")
@click.option(
    "--study",
    "name",
    required=True,
    metavar="NAME",
    help="Study whose task and range_test settings to use.",
)
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
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None)
@_errors
def range_test_command(
    name: str, plot: Path | None, repeats: int | None, device: str | None
) -> None:
    """Run only the LR range test of study NAME's task and print what it reads.

    Nothing is stored; `lrsearch run` runs (and stores) the same test itself.
    """
    from lrsearch.study import run_range_test

    if plot is not None and not plot.parent.is_dir():
        raise LrsearchError(f"--plot: folder {str(plot.parent)!r} does not exist")
    result = run_range_test(name, overrides={"range_test.repeats": repeats, "device": device})
    click.echo(f"bounds:     {result.bounds.low:.3g} .. {result.bounds.high:.3g}")
    click.echo(f"suggestion: {result.suggestion:.3g}")
    click.echo(f"steps run:  {result.num_iter_run} of {result.num_iter}")
    for line in result.advice:
        click.echo(f"note: {line}")
    if plot is not None:
        result.figure().write_html(plot, include_plotlyjs=True)
        click.echo(f"plot: {plot}")


def main() -> None:
    """Entry point of the ``lrsearch`` console script."""
    cli()
