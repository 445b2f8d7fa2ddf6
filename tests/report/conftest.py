"""A synthetic run directory in the exact format rlvr train writes (see rlvr/metrics.py)."""

import json
import math

import pytest

CONFIG = """recipe: grpo
model: {name: tiny-random}
rollout: {prompts_per_step: 2, group_size: 4}
train: {steps: STEPS}
eval: {every: 2, samples: 1}
"""


def metric_rows(steps: int, eval_every: int = 2, tool: bool = False) -> list[dict]:
    """Train rows at steps 1..steps with accuracy = 0.1 + 0.2 ln(step); evals at 0 and every ``eval_every``."""
    rows = [{"step": 0, "eval/accuracy": 0.1, "eval/response_length": 20.0, "eval/problems": 8.0, "time/eval": 1.0}]
    for step in range(1, steps + 1):
        row = {
            "step": step,
            "train/reward": 0.2 + 0.2 * math.log(step),
            "train/reward/math": 0.1 + 0.2 * math.log(step),
            "train/reward/boxed_format": 0.5,
            "train/accuracy": 0.1 + 0.2 * math.log(step),
            "train/response_length": 30.0 * step**0.3,
            "train/entropy": 2.0 - 0.05 * step,
            "loss/clip_frac": 0.01,
            "time/step": 2.0,
            "time/rollout": 1.5,
            "throughput/rollout_tokens_per_s": 100.0,
        }
        if tool:
            row["train/tool_call_rate"] = 0.05 * step
        rows.append(row)
        if eval_every and step % eval_every == 0:
            rows.append({"step": step, "eval/accuracy": 0.1 + 0.05 * step, "eval/problems": 8.0, "time/eval": 1.0})
    return rows


def sample_rows(steps: list[int]) -> list[dict]:
    """Four rollouts per step: two correct (math = 1), two not; ids are unique words to search for."""
    rows = []
    for step in steps:
        for i in range(4):
            correct = i < 2
            rows.append(
                {
                    "step": step,
                    "id": f"arith-{step}-{i}",
                    "prompt": f"What is {step} + {i}?",
                    "completion": f"\\boxed{{{step + i if correct else 99}}} token{step}x{i}",
                    "answer": str(step + i),
                    "reward": 1.2 if correct else 0.2,
                    "components": {"math": 1.0 if correct else 0.0, "boxed_format": 1.0},
                    "advantage": 0.9 if correct else -0.9,
                    "finish_reason": "stop",
                }
            )
    return rows


def write_jsonl(path, rows) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


@pytest.fixture
def make_run(tmp_path):
    """``make_run(name, steps=6, finished=True, tool=False, samples=True)`` -> run directory."""

    def make(name: str, steps: int = 6, finished: bool = True, tool: bool = False, samples: bool = True):
        run = tmp_path / name
        run.mkdir()
        (run / "config.yaml").write_text(CONFIG.replace("STEPS", str(steps)))
        write_jsonl(run / "metrics.jsonl", metric_rows(steps, tool=tool))
        if samples:
            write_jsonl(run / "samples.jsonl", sample_rows(list(range(1, steps + 1, 2))))
        if finished:
            (run / "final").mkdir()
        return run

    return make
