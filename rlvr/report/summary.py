"""The per-run summary table: progress, held-out accuracy, wall time, tokens generated.

What is computed, and its limits (also printed under the table in the HTML):

- wall time: the sum of ``time/step`` (train steps) and ``time/eval`` (evals) as logged, so it
  leaves out model loading, checkpoint writing and any time between a crash and a resume;
- rollout tokens: per train row ``throughput/rollout_tokens_per_s * time/rollout`` (exact: the
  trainer computes that rate as tokens over rollout time); where those are missing,
  ``train/response_length * rollout.prompts_per_step * rollout.group_size`` from config.yaml;
- eval tokens: per eval row ``eval/response_length * eval/problems * eval.samples``.
"""

import math
from typing import Any

from rlvr.report.load import RunData, as_float

TOKENS_NOTE = (
    "Wall time is the sum of logged time/step and time/eval (model loading and checkpoint writing are not "
    "counted). Rollout tokens: throughput/rollout_tokens_per_s × time/rollout per step (or, where those are "
    "missing, mean response length × prompts_per_step × group_size from config.yaml). Eval tokens: "
    "eval/response_length × eval/problems × eval.samples per eval."
)


def summarize(run: RunData) -> dict[str, Any]:
    """Figures for one run; a value is None when the run did not log what it needs."""
    train = [row for row in run.metrics if any(k.startswith("train/") for k in row)]
    evals = [row for row in run.metrics if _num(row, "eval/accuracy") is not None]
    planned = _section(run.config, "train").get("steps")
    eval_acc = [(row["step"], _num(row, "eval/accuracy")) for row in evals]
    best = max(eval_acc, key=lambda p: (p[1], -p[0])) if eval_acc else None
    rewards = [v for v in (_num(row, "train/reward") for row in train) if v is not None]
    return {
        "status": "finished" if run.finished else "in progress or stopped",
        "steps": max((row["step"] for row in train), default=0),
        "planned_steps": planned if isinstance(planned, int) else None,
        "final_eval_accuracy": eval_acc[-1] if eval_acc else None,  # (step, accuracy)
        "best_eval_accuracy": best,  # the earliest step reaching the best accuracy
        "initial_eval_accuracy": next(((s, a) for s, a in eval_acc if s == 0), None),
        "final_train_reward": rewards[-1] if rewards else None,
        "wall_time_s": _total(train, "time/step") + _total(evals, "time/eval"),
        "rollout_tokens": _rollout_tokens(run, train),
        "eval_tokens": _eval_tokens(run, evals),
        "rollouts_logged": len(run.samples),
    }


def _num(row: dict, key: str) -> float | None:
    """A finite number, or None (missing, a string such as "nan", or not a number)."""
    value = as_float(row.get(key))
    return value if value is not None and math.isfinite(value) else None


def _section(config: dict, name: str) -> dict:
    value = config.get(name)
    return value if isinstance(value, dict) else {}


def _total(rows: list[dict], key: str) -> float:
    return sum(v for v in (_num(row, key) for row in rows) if v is not None)


def _rollout_tokens(run: RunData, train: list[dict]) -> int | None:
    rollout = _section(run.config, "rollout")
    per_step = None
    if isinstance(rollout.get("prompts_per_step"), int) and isinstance(rollout.get("group_size"), int):
        per_step = rollout["prompts_per_step"] * rollout["group_size"]
    total, known = 0.0, False
    for row in train:
        rate, seconds = _num(row, "throughput/rollout_tokens_per_s"), _num(row, "time/rollout")
        length = _num(row, "train/response_length")
        if rate is not None and seconds is not None:
            total, known = total + rate * seconds, True
        elif length is not None and per_step:
            total, known = total + length * per_step, True
    return round(total) if known else None


def _eval_tokens(run: RunData, evals: list[dict]) -> int | None:
    samples = _section(run.config, "eval").get("samples", 1)
    samples = samples if isinstance(samples, int) else 1
    total, known = 0.0, False
    for row in evals:
        length, problems = _num(row, "eval/response_length"), _num(row, "eval/problems")
        if length is not None and problems is not None:
            total, known = total + length * problems * samples, True
    return round(total) if known else None
