"""``rlvr bench --scaling``: how step time grows with the work, rlvr and TRL in the same run.

Three axes, each varied alone from one base point (``BASE``): completion length
(``rollout.max_new_tokens`` 48, 128, 512), group size (``rollout.group_size`` 8, 16, 32) and
model size (random-initialized SmolLM2 shapes, 135M, 360M, 1.7B; :mod:`rlvr.models`). A random
model rarely samples eos, so every completion runs to the length bound and each point's work is
set by its config, the same for both contenders. Each point is one ordinary bench
(:func:`rlvr.bench.run_bench`: interleaved steps, warm-up left out) in ``OUT/<axis>-<value>/``;
the base point is run once and shared by the three axes.

Output: ``OUT/scaling.json`` (one row per point: rlvr's and TRL's step, rollout and update
seconds, generated and trained tokens per second, and TRL step / rlvr step), a table, and
``OUT/scaling.png``, step seconds against each axis on log-log axes (needs ``rlvr[report]``).

Limits: a point whose training state cannot fit in this machine's memory (about 16 bytes per
parameter per process for fp32 weights, gradients and AdamW's two moments, both contenders'
processes alive at once) is reported as skipped with what it needs, not run; the 1.7B shape
needs ~27 GiB per process, more than a 24 GiB machine has.
"""

import json
from pathlib import Path

from rlvr.bench.summary import median, ratio
from rlvr.models import RANDOM_SMOLLM2, random_smollm2_params

BASE = ["model.name=random:smollm2-135m", "rollout.max_new_tokens=48", "rollout.group_size=8"]
AXES: dict[str, tuple[str, list]] = {
    "length": ("rollout.max_new_tokens", [48, 128, 512]),
    "group": ("rollout.group_size", [8, 16, 32]),
    "model": ("model.name", ["random:smollm2-135m", "random:smollm2-360m", "random:smollm2-1.7b"]),
}
STATE_BYTES_PER_PARAM = 16  # fp32 weights, gradients, AdamW's exp_avg and exp_avg_sq


def available_memory_bytes() -> float | None:
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return None
    line = next((ln for ln in text.splitlines() if ln.startswith("MemAvailable:")), None)
    return float(line.split()[1]) * 1024 if line else None


def needed_bytes(model: str, processes: int) -> float:
    return (random_smollm2_params(model) if model in RANDOM_SMOLLM2 else 0) * STATE_BYTES_PER_PARAM * processes


def points(axes: list[str]) -> list[tuple[str, object, list[str]]]:
    """(axis, value, overrides) for every point, the base point first and once (axis "base")."""
    base_values = {key: value for key, value in (item.split("=", 1) for item in BASE)}
    out = [("base", "-", list(BASE))]
    for axis in axes:
        key, values = AXES[axis]
        for value in values:
            if str(value) == base_values[key]:
                continue
            out.append((axis, value, [*[b for b in BASE if not b.startswith(key + "=")], f"{key}={value}"]))
    return out


def row_of(axis: str, value, result: dict) -> dict:
    ok = {c["name"]: c for c in result["contenders"] if c["status"] == "ok"}
    row = {"axis": axis, "value": value, "status": "ok"}
    for name in ("rlvr", "trl"):
        summary = ok.get(name, {}).get("summary", {})
        for key in ("step_s", "rollout_s", "update_s", "gen_tok_s", "update_tok_s"):
            row[f"{name}_{key}"] = median(summary, key)
    row["trl_over_rlvr_step"] = ratio(row["trl_step_s"], row["rlvr_step_s"])
    row["trl_over_rlvr_per_token"] = result["ratios"].get("trl_over_rlvr_step_s_per_generated_token")
    failed = [f"{c['name']}: {c['message']}" for c in result["contenders"] if c["status"] == "failed"]
    if failed:
        row["message"] = "; ".join(failed)
    return row


def run_scaling(
    recipe, overrides: list[str], out: Path, axes: list[str], steps: int = 1, warmup: int = 1, trl: bool = True,
    console=None,
) -> dict:  # fmt: skip
    """Every point of ``axes`` (see the module docstring); writes ``out/scaling.json`` and the plot."""
    from rlvr.bench import run_bench

    say = console.print if console is not None else (lambda *a, **k: None)
    memory = available_memory_bytes()
    rows = []
    for axis, value, point in points(axes):
        model = next(p.split("=", 1)[1] for p in point if p.startswith("model.name="))
        need = needed_bytes(model, 2 if trl else 1)
        if memory is not None and need > memory:
            message = f"needs ~{need / 2**30:.0f} GiB of training state, {memory / 2**30:.0f} GiB free"
            rows.append({"axis": axis, "value": value, "status": "skipped", "message": message})
            say(f"[yellow]{axis}={value}: skipped[/yellow] ({rows[-1]['message']})")
            continue
        say(f"[bold]scaling[/bold] {axis}={value}")
        result = run_bench(
            recipe, [*overrides, *point], out / f"{axis}-{str(value).replace(':', '_')}", steps=steps,
            warmup=warmup, trl=trl, trl_fp32=False, console=console,
        )  # fmt: skip
        rows.append(row_of(axis, value, result))
    scaling = {"axes": {a: AXES[a] for a in axes}, "base": BASE, "overrides": overrides, "rows": rows}
    out.mkdir(parents=True, exist_ok=True)
    (out / "scaling.json").write_text(json.dumps(scaling, indent=2, default=str) + "\n")
    scaling["plot"] = plot_scaling(scaling, out / "scaling.png")
    return scaling


def axis_rows(scaling: dict, axis: str) -> list[dict]:
    """The rows of one axis in order, with the base point at its value."""
    key, values = AXES[axis]
    base_value = next(b.split("=", 1)[1] for b in BASE if b.startswith(key + "="))
    by_value = {str(r["value"]): r for r in scaling["rows"] if r["axis"] == axis}
    base = next((r for r in scaling["rows"] if r["axis"] == "base"), None)
    out = []
    for value in values:
        row = base if str(value) == base_value else by_value.get(str(value))
        if row is not None:
            out.append({**row, "value": value})
    return out


def axis_x(axis: str, value) -> float:
    return random_smollm2_params(value) / 1e6 if axis == "model" else float(value)


def plot_scaling(scaling: dict, path: Path) -> str | None:
    """Step seconds against each axis, rlvr and TRL, log-log; None when matplotlib is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    axes = list(scaling["axes"])
    figure = Figure(figsize=(4.2 * len(axes), 3.6))
    FigureCanvasAgg(figure)
    labels = {"length": "max new tokens", "group": "group size", "model": "parameters (M)"}
    for i, axis in enumerate(axes):
        plot = figure.add_subplot(1, len(axes), i + 1)
        rows = [r for r in axis_rows(scaling, axis) if r.get("status") == "ok"]
        for name, style in (("rlvr", "o-"), ("trl", "s--")):
            pts = [(axis_x(axis, r["value"]), r[f"{name}_step_s"]) for r in rows if r.get(f"{name}_step_s")]
            if pts:
                plot.plot(*zip(*pts, strict=True), style, label=name)
        plot.set_xscale("log")
        plot.set_yscale("log")
        xs = [axis_x(axis, r["value"]) for r in rows]
        if xs:  # ticks at the points themselves, labelled plainly
            plot.set_xticks(xs, [f"{x:g}" for x in xs])
            plot.minorticks_off()
        plot.set_xlabel(labels[axis])
        plot.set_ylabel("step s")
        plot.grid(True, which="both", alpha=0.3)
        plot.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return str(path)


def render_scaling(scaling: dict, console) -> None:
    from rich.table import Table

    table = Table(title="rlvr bench --scaling: median step after warm-up")
    for header in ["axis", "value", "rlvr step s", "TRL step s", "TRL / rlvr", "per gen token", "rlvr gen tok/s",
                   "TRL gen tok/s", "rlvr upd tok/s", "TRL upd tok/s"]:  # fmt: skip
        table.add_column(header, justify="right")
    fmt = lambda v, d=2: "-" if v is None else f"{v:.{d}f}"  # noqa: E731
    for axis in scaling["axes"]:
        for r in axis_rows(scaling, axis):
            if r.get("status") != "ok":
                table.add_row(axis, str(r["value"]), r["status"], r.get("message", "")[:60], *[""] * 6)
                continue
            table.add_row(
                axis, str(r["value"]), fmt(r["rlvr_step_s"]), fmt(r["trl_step_s"]), fmt(r["trl_over_rlvr_step"]),
                fmt(r["trl_over_rlvr_per_token"]), fmt(r["rlvr_gen_tok_s"], 1), fmt(r["trl_gen_tok_s"], 1),
                fmt(r["rlvr_update_tok_s"], 1), fmt(r["trl_update_tok_s"], 1),
            )  # fmt: skip
    console.print(table)
    if scaling.get("plot"):
        console.print(f"plot: {scaling['plot']}")
