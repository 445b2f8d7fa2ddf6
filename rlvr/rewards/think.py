"""Rewards for reasoning in a marked span: format, HBPO's budget-aware reward, S-GRPO's decaying
exit reward, AdaptThink's no-think reward (the rollouts: :mod:`rlvr.rollout.think`).

The markers are each reward's own keys (``open``, ``close``), defaulting to the ``think`` section's
defaults; a recipe that changes ``think.open`` / ``think.close`` sets them here too.
"""

import math
from typing import Annotated

from pydantic import Field

from rlvr.rewards import GROUP_REWARDS, REWARDS
from rlvr.rewards.length import model_tokens
from rlvr.rollout.think import is_no_think
from rlvr.types import Completion, Example


def split_thinking(text: str, open_marker: str, close: str) -> tuple[str, str] | None:
    """(thinking, answer) of a response, or None when the close marker is missing or repeated (or
    the open marker, when the response writes one, appears more than once or after the close)."""
    if text.count(close) != 1 or text.count(open_marker) > 1:
        return None
    thinking, answer = text.split(close)
    if open_marker in thinking:
        before, thinking = thinking.split(open_marker)
        if before.strip():
            return None
    return thinking, answer


@REWARDS.register("think_format")
def think_format(completion: Completion, example: Example, *, open: str = "<think>", close: str = "</think>") -> float:
    """1.0 when the response is thinking, the close marker once, then an answer with a non-empty
    ``\\boxed{}`` (the open marker, if the response writes it, only at the start); else 0.0. The
    R1-style format reward (DeepSeek-AI 2025, arXiv 2501.12948), with the open marker optional
    because ``think.prefill`` writes it into the prompt. An empty thinking (no-think) is well formed."""
    parts = split_thinking(completion.response, open, close)
    if parts is None:
        return 0.0
    answer = parts[1]
    start = answer.find("\\boxed{")
    return 1.0 if start >= 0 and answer[start + 7 :].split("}")[0].strip() else 0.0


def hbpo_curve(tokens: int, max_tokens: int, beta: float) -> float:
    """beta cos(pi n / (2 L_max)): HBPO's reward curve; at the budget, n = b, it is f2(b), the most
    a correct answer of budget b can earn (the ceiling the ``hbpo`` advantage subtracts)."""
    return beta * math.cos(math.pi * tokens / (2 * max_tokens))


@GROUP_REWARDS.register("hbpo_budget")
def hbpo_budget(
    completions: list[Completion],
    correct: list[float],
    *,
    max_tokens: Annotated[int, Field(ge=1)],
    beta: Annotated[float, Field(gt=0)] = 4.0,
    alpha: Annotated[float, Field(ge=0)] | None = None,
) -> list[float]:
    """HBPO's budget-aware reward (Lyu et al. 2025, "Hierarchical Budget Policy Optimization for
    Adaptive Reasoning", arXiv 2507.15844, eq. 4-5; authors' code ZJU-REAL/HBPO): for a correct
    response of n tokens sampled under budget b (``Completion.think_budget``, the subgroup's),

        f1(n, b) = beta cos(pi n / (2 L_max)) - alpha |n - b|      when n > b,
        f2(b)    = beta cos(pi b / (2 L_max))                      when n <= b,

    0 when wrong or n > L_max (``max_tokens``, the paper's 4096). beta = 4 and alpha = 1 / L_max
    (``alpha`` None) are the code's. Short answers earn the budget's ceiling, not more: the reward
    does not push every subgroup to the shortest answer, and a longer budget earns less at the same
    length, so subgroups keep their own lengths. It replaces the correctness reward (list it
    instead of the verifier; ``eval.verifier`` keeps accuracy). Pair with ``algo.advantage: hbpo``."""
    alpha = 1.0 / max_tokens if alpha is None else alpha
    out = []
    for completion, score in zip(completions, correct, strict=True):
        if completion.think_budget is None:
            raise ValueError("hbpo_budget needs each completion's thinking budget: set think.budgets")
        n, b = model_tokens(completion), completion.think_budget
        if score < 1.0 or n > max_tokens:
            out.append(0.0)
        elif n > b:
            out.append(hbpo_curve(n, max_tokens, beta) - alpha * abs(n - b))
        else:
            out.append(hbpo_curve(b, max_tokens, beta))
    return out


@GROUP_REWARDS.register("decaying_exit")
def decaying_exit(completions: list[Completion], correct: list[float]) -> list[float]:
    """S-GRPO's decaying reward (Dai et al. 2025, "S-GRPO: Early Exit via Reinforcement Learning in
    Reasoning Models", arXiv 2505.07686): the serial group's responses, ordered by exit position
    (``Completion.think_budget``, early to late; the full path, listed last, last among equals), get

        r_i = 1 / 2^(N_right - 1) if response i is correct, else 0,

    N_right being the number of correct responses up to and including i in that order: the earliest
    correct exit earns 1, the next 1/2, then 1/4; a wrong one earns 0 and does not advance the
    count. It replaces the correctness reward. The paper's advantage is r_i - mean(r)
    (``algo.advantage: dr_grpo``)."""
    if any(c.think_budget is None for c in completions):
        raise ValueError("decaying_exit needs each completion's exit position: set think.early_exits")
    order = sorted(range(len(completions)), key=lambda i: (completions[i].think_budget, i))
    out, right = [0.0] * len(completions), 0
    for i in order:
        if correct[i] >= 1.0:
            right += 1
            out[i] = 1.0 / 2 ** (right - 1)
    return out


@GROUP_REWARDS.register("adapt_think")
def adapt_think(
    completions: list[Completion],
    correct: list[float],
    *,
    delta: Annotated[float, Field(ge=0)] = 0.05,
    open: str = "<think>",
    close: str = "</think>",
    no_think_max_chars: Annotated[int, Field(ge=1)] | None = None,
) -> list[float]:
    """AdaptThink's reward, already an advantage (Zhang et al. 2025, "AdaptThink: Reasoning Models Can
    Learn When to Think", arXiv 2505.13417, eq. 6; THU-KEG/AdaptThink):

        A(x, y) = delta 1[y skips thinking] + R(x, y) - R_ref(x),

    the Lagrangian of "think less, as long as accuracy does not drop below the reference's":
    a no-think answer earns the bonus delta (the paper's 0.05) on top of being right, and every
    answer is measured against R_ref(x), the accuracy of thinking on x. The paper estimates R_ref
    from 16 samples of the frozen reference model, offline; here it is the mean correctness of this
    group's thinking rows (the current policy, online), so no second sampling pass is needed:
    balanced, since a group needs both modes (``think.no_think_frac``, the paper's 0.5); a group with
    no thinking row at all (possible only without forcing) falls back to its mean correctness. Use
    with ``algo.advantage: identity`` (the paper's "naive" estimator). ``no_think_max_chars`` (not in
    the paper; ``think.no_think_max_chars``, which must match): a no-think answer longer than that is
    implicit thinking, earns no bonus and counts among the thinking rows, since the embedded model
    otherwise learns to write its worked steps after the marker (docs/results.md)."""
    skipped = [is_no_think(c.response, open, close, no_think_max_chars) for c in completions]
    thinking = [score for score, skip in zip(correct, skipped, strict=True) if not skip] or list(correct)
    reference = sum(float(s >= 1.0) for s in thinking) / len(thinking)
    return [delta * skip + float(score >= 1.0) - reference for score, skip in zip(correct, skipped, strict=True)]
