"""Held-out evaluation: accuracy, pass@k, maj@k, response length.

Used by ``rlvr eval`` and by the trainer (before training, every ``eval.every`` steps and at
the end), so the numbers in a run and from the CLI are the same computation.
"""

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from math import comb, isnan

from rlvr.rewards import RewardTerm, bind_reward, reward_values
from rlvr.rewards.math import extract_answer, plain_number
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


def vote_key(text: str, example=None) -> str | None:
    """The answer a completion votes for in maj@k: the final answer as the ``math`` reward extracts it
    (last ``\\boxed{}``, else after ``####``, else the last number), whitespace and thousands commas
    dropped, numbers in lowest terms (``8.0``, ``8`` and ``16/2`` are one vote). None: no answer, no vote.

    The default; a verifier registered with a ``vote_key`` trait votes its own way (``multiple_choice``:
    the letter), and one registered with ``vote_key=None`` (code, JSON) reports no maj@k."""
    answer = extract_answer(text)
    if answer is None:
        return None
    number = plain_number(answer)
    return str(number) if number is not None else "".join(answer.split())


def majority_correct(keys: list[str | None], correct: list[bool]) -> bool:
    """maj@k (self-consistency, Wang et al. 2022; "cons@k" in DeepSeek-R1): the most common answer
    among the samples (ties: the one reached first) decides; it is right when the completions
    that gave it were scored correct. No sample with an answer: wrong."""
    votes = Counter(k for k in keys if k is not None)
    if not votes:
        return False
    top = max(votes.values())
    winner = next(k for k in keys if k is not None and votes[k] == top)
    return correct[keys.index(winner)]


@dataclass
class EvalResult:
    metrics: dict[str, float]  # eval/accuracy, eval/pass@k, eval/response_length, ...
    rows: list[dict]  # one per completion: id, sample, prompt, completion, answer, reward, correct, tokens, finish


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
    think=None,
) -> EvalResult:
    """``verifier``: a reward name (its defaults) or a bound reward; it scores what the model wrote
    (``completion.response``), as training does. ``tools`` (a ToolsConfig with env set) evaluates
    multi-turn episodes with the tool; ``think`` (a ThinkConfig, enabled) thinking rollouts under its
    budget, the model choosing its own mode (rlvr.rollout.think). Examples whose ``meta`` has a
    ``difficulty`` also get accuracy, length (and no-think rate) per difficulty."""
    check = _verifier_term(verifier)
    thinking = think is not None and think.enabled
    if thinking:
        from rlvr.rollout.think import think_generate

        groups = think_generate(engine, examples, samples, sampling, think, train=False)
    elif tools is not None and tools.env != "none":
        from rlvr.envs.rollout import multi_turn_generate

        groups = multi_turn_generate(engine, examples, samples, sampling, tools)
    else:
        groups = generate(engine, examples, samples, sampling)
    completions = [c for g in groups for c in g]
    values = reward_values(check, completions, [c.example for c in completions])
    votes = check.traits.get("vote_key", vote_key)
    correct_counts, lengths, truncated, rows = [], [], [], []
    majority = {k: 0 for k in ks_for(samples)[1:]} if votes is not None else {}
    for i, (example, group) in enumerate(zip(examples, groups, strict=True)):
        scores = values[i * samples : (i + 1) * samples]
        oks = [not isnan(v) and v >= 1.0 for v in scores]
        correct_counts.append(sum(oks))
        keys = [votes(c.response, example) for c in group] if majority else []
        for k in majority:
            majority[k] += majority_correct(keys[:k], oks[:k])
        for j, (completion, value, ok) in enumerate(zip(group, scores, oks, strict=True)):
            lengths.append(len(completion.token_ids))
            truncated.append(completion.finish_reason == "length")
            rows.append(
                {
                    "id": example.id, "sample": j, "prompt": example.prompt, "completion": completion.text,
                    "answer": example.answer, "reward": None if isnan(value) else value, "correct": ok,
                    "tokens": len(completion.token_ids), "finish_reason": completion.finish_reason,
                }
            )  # fmt: skip
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
    if thinking:
        from rlvr.rollout.think import think_metrics

        metrics |= think_metrics([c for g in groups for c in g], think, prefix="eval")
    metrics |= difficulty_metrics(groups, correct_counts, think if thinking else None)
    for k in ks_for(samples)[1:]:
        metrics[f"eval/pass@{k}"] = sum(pass_at_k(samples, c, k) for c in correct_counts) / n
        if k in majority:
            metrics[f"eval/maj@{k}"] = majority[k] / n
    return EvalResult(metrics, rows)


def difficulty_metrics(groups, correct_counts: list[int], think=None) -> dict[str, float]:
    """Accuracy, mean length (and with ``think``, the no-think rate) per ``meta["difficulty"]``: how
    AdaptThink-style runs are judged (thinking skipped more on the easier problems)."""
    by: dict[str, list[int]] = {}
    for i, group in enumerate(groups):
        level = group[0].example.meta.get("difficulty") if group else None
        if level is not None:
            by.setdefault(str(level), []).append(i)
    metrics = {}
    for level, rows in sorted(by.items()):
        completions = [c for i in rows for c in groups[i]]
        metrics[f"eval/accuracy/{level}"] = sum(correct_counts[i] for i in rows) / len(completions)
        metrics[f"eval/response_length/{level}"] = sum(len(c.token_ids) for c in completions) / len(completions)
        if think is not None:
            from rlvr.rollout.think import skips_thinking

            skipped = sum(skips_thinking(c.text, think) for c in completions)
            metrics[f"eval/no_think_rate/{level}"] = skipped / len(completions)
    return metrics


def _verifier_term(verifier: "str | RewardTerm | Callable") -> RewardTerm:
    if isinstance(verifier, RewardTerm):
        return verifier
    if isinstance(verifier, str):
        return bind_reward(verifier, key="eval.verifier")
    return RewardTerm(getattr(verifier, "name", "verifier"), 1.0, verifier, "completion")


def evaluate_budgets(
    engine: RolloutEngine,
    examples: list[Example],
    verifier: "str | Callable",
    sampling: SamplingParams,
    budgets: list[int],
    samples: int = 1,
    tools=None,
    think=None,
) -> list[tuple[int, EvalResult]]:
    """:func:`evaluate` once per token budget: the accuracy-vs-budget curve of the length-control
    papers (L1, Elastic Reasoning, ThinkDial). Without ``think`` the budget is ``max_new_tokens``
    (per turn in multi-turn episodes) and a completion cut there is scored as it stands; with
    ``think`` enabled it is the thinking budget, and a cut thinking gets the forced answer."""
    from dataclasses import replace

    results = []
    for b in budgets:
        budgeted = think.model_copy(update={"budget": b}) if think is not None and think.enabled else think
        results.append((b, evaluate(engine, examples, verifier, replace(sampling, max_new_tokens=b), samples, tools,
                                    budgeted)))  # fmt: skip
    return results
