"""``rlvr sweep``: several recipes on the same task, budget and seed, compared in one table.

Each recipe runs in turn (same overrides for all, e.g. ``train.steps=8 train.seed=0``) into
``OUT/<recipe>/``. The starting model's held-out accuracy is the same for every recipe that
starts from the same model, so it is measured once, by the first run, and the others skip
their "before" eval. Columns: held-out accuracy before and after, mean training reward,
response length and entropy over the last three steps, mean step time. A recipe that fails
is reported in its row and the sweep goes on.

``--seeds 0 1 2`` runs every recipe once per seed (``train.seed=k``, into ``OUT/<recipe>/seed<k>/``)
and adds one row per recipe with each column's mean and sample std over its seeds, ``mean ± std``;
a seed that failed is left out of that row and named in it.
"""

import json
import statistics
import time
from pathlib import Path

from rlvr.config import load_config
from rlvr.errors import RlvrError
from rlvr.metrics import read_metrics

COLUMNS = [
    ("recipe", "recipe"),
    ("eval_before", "held-out acc. before"),
    ("eval_after", "held-out acc. after"),
    ("reward_last3", "train reward (last 3)"),
    ("length_last3", "response length (last 3)"),
    ("entropy_last3", "entropy (last 3)"),
    ("step_seconds", "s / step"),
    ("wall_seconds", "wall s"),
]


def summarize(run_dir: Path) -> dict:
    rows = read_metrics(run_dir / "metrics.jsonl")
    train = [r for r in rows if "train/reward" in r]
    evals = [r for r in rows if "eval/accuracy" in r]
    last = train[-3:]

    def mean(key: str, rows_: list[dict]) -> float | None:
        values = [r[key] for r in rows_ if isinstance(r.get(key), (int, float))]
        return sum(values) / len(values) if values else None

    return {
        "eval_before": next((r["eval/accuracy"] for r in evals if r["step"] == 0), None),
        "eval_after": evals[-1]["eval/accuracy"] if evals and evals[-1]["step"] > 0 else None,
        "reward_last3": mean("train/reward", last),
        "length_last3": mean("train/response_length", last),
        "entropy_last3": mean("train/entropy", last),
        "step_seconds": mean("time/step", train),
        "steps": len(train),
    }


def sweep(recipes: list[str], overrides: list[str], out: Path, console, seeds: list[int] | None = None) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    results: list[dict] = []
    before: dict[int | None, float | None] = {}  # per seed: the starting model's accuracy (seeded eval sampling)
    runs = [(recipe, seed) for recipe in recipes for seed in (seeds if seeds else [None])]
    for recipe, seed in runs:
        from rlvr.trainer import train

        name = Path(recipe).stem if recipe.endswith((".yaml", ".yml")) else recipe
        run_dir = out / name if seed is None else out / name / f"seed{seed}"
        started = time.perf_counter()
        row: dict = {"recipe": name, "run_dir": str(run_dir)} | ({} if seed is None else {"seed": seed})
        try:
            extra = [] if before.get(seed) is None else ["eval.before=false"]
            extra += [] if seed is None else [f"train.seed={seed}"]
            config = load_config(recipe, [*overrides, *extra])
            label = name if seed is None else f"{name}, seed {seed}"
            console.print(f"[bold]sweep[/bold]: {label} ({len(results) + 1}/{len(runs)}) -> {run_dir}")
            train(config, run_dir)
            row |= summarize(run_dir)
            if before.get(seed) is None:
                before[seed] = row["eval_before"]
            row["eval_before"] = before[seed]
        except RlvrError as err:
            row["error"] = str(err)
        row["wall_seconds"] = time.perf_counter() - started
        results.append(row)
        write_outputs(results, overrides, out, seeds)
    return results


def seed_summary(results: list[dict]) -> list[dict]:
    """One row per recipe: each numeric column's mean and sample std over the seeds that finished."""
    rows = []
    for recipe in dict.fromkeys(r["recipe"] for r in results):
        done = [r for r in results if r["recipe"] == recipe and "error" not in r]
        failed = [r["seed"] for r in results if r["recipe"] == recipe and "error" in r]
        row: dict = {"recipe": f"{recipe} (seeds {', '.join(str(r['seed']) for r in done) or 'none'})"}
        if failed:
            row["recipe"] += f"; failed: seed {', '.join(map(str, failed))}"
        for key, _ in COLUMNS[1:]:
            values = [r[key] for r in done if isinstance(r.get(key), (int, float))]
            if values:
                row[key] = mean_std(values)
        rows.append(row)
    return rows


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample (n - 1) std; std 0 for one value."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def write_outputs(results: list[dict], overrides: list[str], out: Path, seeds: list[int] | None = None) -> None:
    summary = seed_summary(results) if seeds else []
    record = {"overrides": overrides, "results": results} | ({"seeds": seeds, "summary": summary} if seeds else {})
    (out / "sweep.json").write_text(json.dumps(record, indent=2) + "\n")
    table = markdown_table(results, overrides)
    if seeds:
        table += "\nMean ± std over seeds:\n\n" + "\n".join(markdown_table(summary, []).splitlines()[2:]) + "\n"
    (out / "sweep.md").write_text(table)


def markdown_table(results: list[dict], overrides: list[str]) -> str:
    lines = [
        f"Overrides for every recipe: `{' '.join(overrides) or '(none)'}`",
        "",
        "| " + " | ".join(label for _, label in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for row in results:
        if "error" in row:
            lines.append(f"| {_label(row)} | failed: {row['error']} |" + " |" * (len(COLUMNS) - 2))
            continue
        lines.append("| " + " | ".join([_label(row), *(_fmt(row.get(key)) for key, _ in COLUMNS[1:])]) + " |")
    return "\n".join(lines) + "\n"


def _label(row: dict) -> str:
    return row["recipe"] if "seed" not in row else f"{row['recipe']} (seed {row['seed']})"


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, tuple):
        return f"{_fmt(value[0])} ± {_fmt(value[1])}"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)
