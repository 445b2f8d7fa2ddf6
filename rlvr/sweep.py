"""``rlvr sweep``: several recipes on the same task, budget and seed, compared in one table.

Each recipe runs in turn (same overrides for all, e.g. ``train.steps=8 train.seed=0``) into
``OUT/<recipe>/``. The starting model's held-out accuracy is the same for every recipe that
starts from the same model, so it is measured once, by the first run, and the others skip
their "before" eval. Columns: held-out accuracy before and after, mean training reward,
response length and entropy over the last three steps, mean step time. A recipe that fails
is reported in its row and the sweep goes on.
"""

import json
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


def sweep(recipes: list[str], overrides: list[str], out: Path, console) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    results: list[dict] = []
    before = None
    for recipe in recipes:
        from rlvr.trainer import train

        run_dir = out / recipe
        started = time.perf_counter()
        row: dict = {"recipe": recipe, "run_dir": str(run_dir)}
        try:
            extra = [] if before is None else ["eval.before=false"]
            config = load_config(recipe, [*overrides, *extra])
            console.print(f"[bold]sweep[/bold]: {recipe} ({len(results) + 1}/{len(recipes)}) -> {run_dir}")
            train(config, run_dir)
            row |= summarize(run_dir)
            if before is None:
                before = row["eval_before"]
            row["eval_before"] = before
        except RlvrError as err:
            row["error"] = str(err)
        row["wall_seconds"] = time.perf_counter() - started
        results.append(row)
        write_outputs(results, overrides, out)
    return results


def write_outputs(results: list[dict], overrides: list[str], out: Path) -> None:
    (out / "sweep.json").write_text(json.dumps({"overrides": overrides, "results": results}, indent=2) + "\n")
    (out / "sweep.md").write_text(markdown_table(results, overrides))


def markdown_table(results: list[dict], overrides: list[str]) -> str:
    lines = [
        f"Overrides for every recipe: `{' '.join(overrides) or '(none)'}`",
        "",
        "| " + " | ".join(label for _, label in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for row in results:
        if "error" in row:
            lines.append(f"| {row['recipe']} | failed: {row['error']} |" + " |" * (len(COLUMNS) - 2))
            continue
        lines.append("| " + " | ".join(_fmt(row.get(key)) for key, _ in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)
