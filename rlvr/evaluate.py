"""Held-out evaluation: accuracy, pass@k, response length.

Used by ``rlvr eval`` and by the trainer (before training, every ``eval.every`` steps and at
the end), so the numbers in a run and from the CLI are the same computation.
"""

from collections.abc import Callable
from dataclasses import dataclass
from math import comb

from rlvr.rewards import REWARDS, call_reward
from rlvr.rollout import RolloutEngine, SamplingParams, generate
from rlvr.types import Example


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021, Codex): 1 - C(n - c, k) / C(n, k).

    The chance that at least one of k completions drawn without replacement from n sampled
    ones (c of them correct) is correct.
    """
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


@dataclass
class EvalResult:
    metrics: dict[str, float]  # eval/accuracy, eval/pass@k, eval/response_length, ...
    rows: list[dict]  # one per completion: id, prompt, completion, correct


def ks_for(samples: int) -> list[int]:
    """Report pass@1, 2, 4, ... up to the number of samples."""
    ks, k = [], 1
    while k <= samples:
        ks.append(k)
        k *= 2
    return ks


def evaluate(
    engine: RolloutEngine,
    examples: list[Example],
    verifier: "str | Callable",
    sampling: SamplingParams,
    samples: int = 1,
    tools=None,
) -> EvalResult:
    """``verifier``: a reward name (its defaults) or a bound reward; it scores what the model wrote
    (``completion.response``), as training does. ``tools`` (a ToolsConfig with env set) evaluates
    multi-turn episodes with the tool."""
    check = REWARDS.bind(verifier) if isinstance(verifier, str) else verifier
    if tools is not None and tools.env != "none":
        from rlvr.envs.rollout import multi_turn_generate

        groups = multi_turn_generate(engine, examples, samples, sampling, tools)
    else:
        groups = generate(engine, examples, samples, sampling)
    correct_counts, lengths, truncated, rows = [], [], [], []
    for example, group in zip(examples, groups, strict=True):
        correct = 0
        for completion in group:
            ok = call_reward(getattr(check, "name", "verifier"), check, completion, example) >= 1.0
            correct += ok
            lengths.append(len(completion.token_ids))
            truncated.append(completion.finish_reason == "length")
            rows.append({"id": example.id, "completion": completion.text, "answer": example.answer, "correct": ok})
        correct_counts.append(correct)
    n = len(examples)
    metrics = {
        "eval/accuracy": sum(c / samples for c in correct_counts) / n,
        "eval/response_length": sum(lengths) / len(lengths),
        "eval/truncated_frac": sum(truncated) / len(truncated),
        "eval/problems": float(n),
    }
    solved = sum(correct_counts)
    if solved:  # the efficiency the length papers report: every generated token over the answers that were right
        metrics["eval/tokens_per_correct"] = sum(lengths) / solved
    if tools is not None and tools.env != "none":
        from rlvr.envs import tool_metrics

        metrics |= {f"eval/{k}": v for k, v in tool_metrics([c for g in groups for c in g]).items()}
    for k in ks_for(samples)[1:]:
        metrics[f"eval/pass@{k}"] = sum(pass_at_k(samples, c, k) for c in correct_counts) / n
    return EvalResult(metrics, rows)


def evaluate_budgets(
    engine: RolloutEngine,
    examples: list[Example],
    verifier: "str | Callable",
    sampling: SamplingParams,
    budgets: list[int],
    samples: int = 1,
    tools=None,
) -> list[tuple[int, EvalResult]]:
    """:func:`evaluate` once per token budget (``max_new_tokens``; per turn in multi-turn episodes):
    the accuracy-vs-budget curve of the length-control papers (L1, Elastic Reasoning, ThinkDial).
    A completion cut at the budget is scored as it stands (no forced answer)."""
    from dataclasses import replace

    return [
        (b, evaluate(engine, examples, verifier, replace(sampling, max_new_tokens=b), samples, tools)) for b in budgets
    ]
