"""PNG plots of a run's metrics against step, several runs overlaid.

One figure per metric group (reward and its components, accuracy train and eval, response
length, entropy, KL, clip fraction, tool use); colour tells the run, line style the metric. A
group no run has is skipped. Figures are drawn on matplotlib's Agg canvas directly, without
pyplot, so building a report never changes the caller's backend (a notebook keeps its own).

matplotlib is an optional extra, imported here only: ``pip install 'rlvr[report]'``.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rlvr.errors import RlvrError
from rlvr.report.fits import Fit
from rlvr.report.load import RunData

STYLES = ["-", "--", ":", "-."]


@dataclass
class Series:
    run: str
    key: str
    steps: list[int]
    values: list[float]


@dataclass
class Plot:
    """A written figure and the data drawn in it (what tests and the HTML look at)."""

    name: str  # file stem
    title: str
    path: Path
    series: list[Series] = field(default_factory=list)


GROUPS: list[tuple[str, str, Callable[[str], bool]]] = [  # (file stem, title, which keys)
    ("reward", "Reward and its components", lambda k: k == "train/reward" or k.startswith("train/reward/")),
    ("accuracy", "Accuracy (train and held-out)", lambda k: k in ("train/accuracy", "eval/accuracy")),
    ("response_length", "Response length (tokens)", lambda k: k in ("train/response_length", "eval/response_length")),
    ("entropy", "Entropy", lambda k: k == "train/entropy"),
    ("kl", "KL to the reference", lambda k: k.split("/")[-1] == "kl"),
    ("clip_frac", "Clip fraction", lambda k: k.split("/")[-1].startswith("clip_frac")),
    ("tool", "Tool use", lambda k: "tool" in k),
    ("sft", "SFT loss on demonstrations (nats per token)", lambda k: k in ("sft/nll", "relift/nll")),
    ("mix", "Demonstrations in the groups", lambda k: k in ("mix/demo_reward", "mix/prefix_reward")),
    ("think", "Thinking: no-think rate, forced answers", lambda k: k.startswith("think/") or "no_think_rate" in k),
    ("sampling", "Sampling: rollouts per step, group sizes, replay, hints",
     lambda k: k.startswith(("sampling/rollouts", "sampling/group_size", "replay/groups", "replay/stale", "hints/"))),
    ("sampler", "Sampler state", lambda k: k.startswith("sampler/")),
]  # fmt: skip


def run_color(i: int, runs: int):
    """Run i's colour: matplotlib's ten cycle colours, or tab20's twenty when more runs are overlaid."""
    if runs <= 10:
        return f"C{i}"
    import matplotlib

    return matplotlib.colormaps["tab20"](i % 20)


def matplotlib_figure(width: float = 7.0, height: float = 3.8):
    """A matplotlib Figure on an Agg canvas; a one-line error naming the extra if matplotlib is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise RlvrError("rlvr report needs matplotlib: pip install 'rlvr[report]'") from None
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def metric_groups(runs: list[RunData]) -> list[tuple[str, str, list[str]]]:
    """(stem, title, keys) of each group some run has, keys in a stable order (train first)."""
    keys = set().union(*(run.keys() for run in runs)) if runs else set()
    groups = []
    for stem, title, wanted in GROUPS:
        chosen = sorted((k for k in keys if wanted(k)), key=lambda k: (k.count("/"), not k.startswith("train/"), k))
        if chosen:
            groups.append((stem, title, chosen))
    return groups


def plot_metrics(runs: list[RunData], out_dir: Path) -> list[Plot]:
    """Write ``<stem>.png`` per metric group into ``out_dir``, and the accuracy-against-tokens figure
    when a run evaluated; returns what was drawn."""
    plots = [plot_group(runs, stem, title, keys, out_dir / f"{stem}.png") for stem, title, keys in metric_groups(runs)]
    if any(run.series("eval/accuracy")[0] for run in runs):
        plots.append(plot_accuracy_vs_tokens(runs, out_dir / "accuracy_vs_tokens.png"))
        plots.append(plot_accuracy_vs_rollouts(runs, out_dir / "accuracy_vs_rollouts.png"))
    return plots


def rollouts_by_step(run: RunData) -> dict[int, float]:
    """Rollouts generated through each step (step 0: none): the logged ``sampling/rollouts``, or, for a
    run that predates it, prompts_per_step x group_size from its config."""
    rollout = run.config.get("rollout", {}) if isinstance(run.config, dict) else {}
    fixed = float(rollout.get("prompts_per_step", 0) * rollout.get("group_size", 0))
    total, out = 0.0, {0: 0.0}
    for row in run.metrics:
        if "train/reward" in row or "sampling/rollouts" in row:
            total += float(row.get("sampling/rollouts", fixed))
            out[row["step"]] = total
    return out


def plot_accuracy_vs_rollouts(runs: list[RunData], path: Path) -> Plot:
    """Held-out accuracy against the rollouts generated up to each eval (hint tiers included): the
    sample-efficiency picture of the adaptive-sampling papers, up and to the left is better. Series
    "steps" are the cumulative rollout counts."""
    figure = matplotlib_figure()
    ax = figure.subplots()
    plot = Plot("accuracy_vs_rollouts", "Held-out accuracy against rollouts generated", path)
    for i, run in enumerate(runs):
        spent = rollouts_by_step(run)
        points = [(spent[s], a) for s, a in zip(*run.series("eval/accuracy"), strict=True) if s in spent]
        if not points:
            continue
        xs, ys = [x for x, _ in points], [y for _, y in points]
        plot.series.append(Series(run.name, "eval/accuracy", [round(x) for x in xs], ys))
        ax.plot(xs, ys, color=run_color(i, len(runs)), marker="o", markersize=3, label=run.name)
    _decorate(ax, plot.title)
    ax.set_xlabel("rollouts generated")
    ax.set_ylabel("held-out accuracy")
    figure.savefig(path)
    return plot


def plot_accuracy_vs_tokens(runs: list[RunData], path: Path) -> Plot:
    """Held-out accuracy against mean response tokens, one path per run through its evals (the
    last one marked large): the efficiency picture of the length papers, up and to the left is
    better. Series values are accuracies, their "steps" the mean token counts (rounded)."""
    figure = matplotlib_figure()
    ax = figure.subplots()
    plot = Plot("accuracy_vs_tokens", "Held-out accuracy against mean response tokens", path)
    for i, run in enumerate(runs):
        acc = dict(zip(*run.series("eval/accuracy"), strict=True))
        length = dict(zip(*run.series("eval/response_length"), strict=True))
        steps = [s for s in acc if s in length]
        if not steps:
            continue
        xs, ys = [length[s] for s in steps], [acc[s] for s in steps]
        plot.series.append(Series(run.name, "eval/accuracy", [round(x) for x in xs], ys))
        ax.plot(xs, ys, color=run_color(i, len(runs)), marker="o", markersize=3, alpha=0.6, label=run.name)
        ax.scatter(xs[-1:], ys[-1:], color=run_color(i, len(runs)), s=60, zorder=3)
    _decorate(ax, plot.title)
    ax.set_xlabel("mean response tokens (held-out)")
    ax.set_ylabel("accuracy")
    figure.savefig(path)
    return plot


def plot_group(runs: list[RunData], stem: str, title: str, keys: list[str], path: Path) -> Plot:
    figure = matplotlib_figure()
    ax = figure.subplots()
    plot = Plot(stem, title, path)
    for i, run in enumerate(runs):
        for j, key in enumerate(keys):
            steps, values = run.series(key)
            if not steps:
                continue
            plot.series.append(Series(run.name, key, steps, values))
            sparse = key.startswith("eval/") or len(steps) <= 30
            ax.plot(
                steps,
                values,
                color=run_color(i, len(runs)),
                linestyle=STYLES[j % len(STYLES)],
                marker="o" if sparse else None,
                markersize=4,
                label=f"{run.name} · {key}" if len(runs) > 1 else key,
            )
    _decorate(ax, title)
    figure.savefig(path)
    return plot


def plot_fits(runs: list[RunData], fits: list[Fit], out_dir: Path) -> list[Plot]:
    """One ``fit_<metric>.png`` per fitted metric: the points and both fitted curves per run."""
    import numpy as np

    plots = []
    for metric in dict.fromkeys(f.metric for f in fits):
        stem = "fit_" + metric.replace("/", "_").replace("@", "_at_")
        figure = matplotlib_figure()
        ax = figure.subplots()
        plot = Plot(stem, f"Fits of {metric}", out_dir / f"{stem}.png")
        for i, run in enumerate(runs):
            steps, values = run.series(metric)
            if not steps:
                continue
            plot.series.append(Series(run.name, metric, steps, values))
            prefix = f"{run.name} · " if len(runs) > 1 else ""
            ax.scatter(steps, values, color=run_color(i, len(runs)), s=14, label=f"{prefix}points")
            xs = np.linspace(max(min(steps), 1), max(max(steps), 1), 200)
            for fit in (f for f in fits if f.run == run.name and f.metric == metric and f.a is not None):
                style = "-" if fit.form == "log" else "--"
                color = run_color(i, len(runs))
                ax.plot(xs, fit.predict(xs), color=color, linestyle=style, label=f"{prefix}{fit.formula}")
        _decorate(ax, plot.title)
        figure.savefig(plot.path)
        plots.append(plot)
    return plots


def _decorate(ax, title: str) -> None:
    ax.set_title(title, fontsize=11)
    ax.set_xlabel("step")
    ax.ticklabel_format(axis="y", useOffset=False)  # "1e-6+1.0799e1" above the axis reads badly
    ax.grid(alpha=0.3)
    if ax.has_data():  # many runs: more columns, smaller type, so the legend never outgrows the axes
        entries = len(ax.get_legend_handles_labels()[1])
        ax.legend(fontsize=7 if entries <= 12 else 5, loc="best", ncol=1 + entries // 12)
