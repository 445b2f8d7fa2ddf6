"""``rlvr report``: plots, scaling fits and one self-contained HTML page for one or more runs.

:func:`build_report` reads run directories (robustly: a run in progress or one whose last line
was cut by a crash still reports, with notes on what was skipped), writes a PNG per metric group
with the runs overlaid, fits ``y = a + b ln(step)`` and ``y = a step^b`` to chosen metrics
(``fits.json`` and ``fit_*.png``), and writes ``report.html`` with everything embedded.
matplotlib is the optional extra ``rlvr[report]``.
"""

import json
import math
from collections.abc import Callable
from pathlib import Path

from rlvr.report.fits import Fit, fit_both
from rlvr.report.load import RunData, load_runs

DEFAULT_FIT_METRICS = ["train/accuracy", "train/response_length", "eval/accuracy"]


def build_report(
    run_dirs: list[Path | str],
    out_dir: Path | str | None = None,
    fit_metrics: list[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Write the report of ``run_dirs`` into ``out_dir`` (default ``<first run>/report``) and
    return the path of report.html. ``fit_metrics`` defaults to :data:`DEFAULT_FIT_METRICS` plus
    any tool-use metric; ``log`` receives one line per run read and per thing skipped."""
    from rlvr.report.html import render_page
    from rlvr.report.plots import plot_fits, plot_metrics
    from rlvr.report.summary import summarize

    log = log or (lambda line: None)
    runs = load_runs(list(run_dirs))
    out = Path(out_dir) if out_dir is not None else Path(run_dirs[0]) / "report"
    out.mkdir(parents=True, exist_ok=True)
    for run in runs:
        log(describe(run))
        for note in run.notes:
            log(f"{run.name}: {note}")

    plots = plot_metrics(runs, out)
    explicit = fit_metrics is not None
    fits = fit_runs(runs, fit_metrics if explicit else default_fit_metrics(runs), explicit)
    (out / "fits.json").write_text(json.dumps({"fits": [_clean(f.to_dict()) for f in fits]}, indent=2) + "\n")
    fit_plots = plot_fits(runs, [f for f in fits if f.n], out)
    page = render_page(runs, [summarize(run) for run in runs], plots, fits, fit_plots)
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def default_fit_metrics(runs: list[RunData]) -> list[str]:
    tools = sorted({k for run in runs for k in run.keys() if "tool" in k})
    return DEFAULT_FIT_METRICS + tools


def fit_runs(runs: list[RunData], metrics: list[str], explicit: bool = False) -> list[Fit]:
    """Both fits of each metric for each run that logged it; a requested metric a run lacks
    gets a row saying so (a default one is left out quietly)."""
    fits = []
    for metric in metrics:
        for run in runs:
            steps, values = run.series(metric)
            if steps:
                fits.extend(fit_both(steps, values, run.name, metric))
            elif explicit:
                fits.append(Fit(run.name, metric, "log", None, None, None, 0, "not logged by this run"))
    return fits


def describe(run: RunData) -> str:
    steps = [row["step"] for row in run.metrics]
    span = f"steps {min(steps)}-{max(steps)}" if steps else "no steps"
    return (
        f"{run.name}: read {len(run.metrics)} metric rows ({span}), {len(run.samples)} rollouts, "
        f"{len(run.eval_samples)} held-out completions"
    )


def _clean(row: dict) -> dict:
    """JSON has no NaN or infinity: such a number becomes null."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}


__all__ = ["build_report", "DEFAULT_FIT_METRICS"]
