"""Length rewards: reasoning at the same accuracy for fewer tokens (issue 17's first part).

Each is an ordinary reward term, composable with the rest of the mix and logged as its own
component. A completion's length is the number of tokens the model wrote (tool output excluded:
``sum(loss_mask)``). Those that depend on correctness are group rewards: they receive the
verifier's score of each completion of the group (``correct``, 1.0 meaning right).

- ``length_target`` (L1-Exact) and ``length_target_max`` (L1-Max): a target length per example;
- ``cosine_length``: correct answers earn more when short, wrong ones are punished less when long;
- ``kimi_length``: the group-relative length reward of Kimi k1.5;
- ``laser``: LASER's step reward around a target length, with LASER-D's difficulty buckets when
  per-bucket targets are given.

- ``concise``: ConciseR's length reward, only for groups that are all correct.

Not here: LASER-D's dynamic targets (re-chosen from a monitoring set during training). Budgeted
rollouts and think/no-think: :mod:`rlvr.rollout.think`, :mod:`rlvr.rewards.think`.
"""

import math
from typing import Annotated, Literal

from pydantic import Field

from rlvr.rewards import GROUP_REWARDS, REWARDS
from rlvr.types import Completion, Example


def model_tokens(completion: Completion) -> int:
    """Tokens the model wrote (tool output, which the loss mask zeroes, is not its length)."""
    return sum(completion.loss_mask) if completion.loss_mask else len(completion.token_ids)


def target_length(example: Example, target: int | None, target_key: str) -> int:
    if target is not None:
        return target
    if target_key not in example.meta:
        raise ValueError(
            f"the example has no meta[{target_key!r}] target length: set the reward's target or target_key"
        )
    return int(example.meta[target_key])


@REWARDS.register("length_target")
def length_target(
    completion: Completion,
    example: Example,
    *,
    target: Annotated[int, Field(ge=0)] | None = None,
    target_key: str = "target_tokens",
) -> float:
    """L1-Exact's length term (Aggarwal & Welleck 2025, "L1: Controlling How Long A Reasoning Model
    Thinks With Reinforcement Learning", arXiv 2503.04697): LCPO's reward is
    1[y correct] - alpha |n_gold - n_y|, so this term is -|n_gold - n_y| and its weight is alpha
    (the paper's 0.0003). n_gold comes from ``example.meta[target_key]`` (the task puts the same
    target in the prompt, "Think for n_gold tokens") or a fixed ``target``."""
    return -float(abs(target_length(example, target, target_key) - model_tokens(completion)))


@GROUP_REWARDS.register("length_target_max")
def length_target_max(
    completions: list[Completion],
    correct: list[float],
    *,
    alpha: Annotated[float, Field(gt=0)] = 0.0003,
    delta: float = 0.5,
    target: Annotated[int, Field(ge=0)] | None = None,
    target_key: str = "target_tokens",
) -> list[float]:
    """L1-Max's reward (same paper): r = 1[y correct] x clip(alpha (n_gold - n_y) + delta, 0, 1), with the
    paper's alpha = 0.0003 and delta = 0.5: a correct answer within budget earns more the more room it
    leaves, one over budget less, down to 0. It replaces the correctness reward rather than adding
    to it: list it instead of the verifier (``eval.verifier`` keeps accuracy)."""
    out = []
    for completion, score in zip(completions, correct, strict=True):
        room = target_length(completion.example, target, target_key) - model_tokens(completion)
        out.append(float(score >= 1.0) * min(max(alpha * room + delta, 0.0), 1.0))
    return out


@GROUP_REWARDS.register("cosine_length")
def cosine_length(
    completions: list[Completion],
    correct: list[float],
    *,
    correct_short: float = 2.0,
    correct_long: float = 1.0,
    wrong_short: float = -10.0,
    wrong_long: float = 0.0,
    exceed: float = -10.0,
    max_tokens: Annotated[int, Field(ge=1)] | None = None,
) -> list[float]:
    """Cosine length scaling (Yeo et al. 2025, "Demystifying Long Chain-of-Thought Reasoning in LLMs",
    arXiv 2502.03373): with t the length and T the budget,

        CosFn(t, T, r_0, r_T) = r_T + (r_0 - r_T) (1 + cos(t pi / T)) / 2,

    r = CosFn(t, T, correct_short, correct_long) if correct, CosFn(t, T, wrong_short, wrong_long) if
    wrong, ``exceed`` if the completion ran out of budget (finish reason "length"). Defaults are the
    paper's (2, 1, -10, 0, -10): shorter is better when right, longer when wrong (keep thinking). T is
    ``max_tokens`` or the budget each completion was sampled under. It replaces the correctness
    reward (the paper uses it as the whole reward): list it instead of the verifier."""
    out = []
    for completion, score in zip(completions, correct, strict=True):
        budget = max_tokens or completion.budget
        if budget is None:
            raise ValueError("the completion carries no token budget: set the reward's max_tokens")
        if completion.finish_reason == "length":
            out.append(exceed)
            continue
        r_0, r_t = (correct_short, correct_long) if score >= 1.0 else (wrong_short, wrong_long)
        t = min(model_tokens(completion), budget)
        out.append(r_t + (r_0 - r_t) * (1.0 + math.cos(t * math.pi / budget)) / 2.0)
    return out


@GROUP_REWARDS.register("kimi_length")
def kimi_length(completions: list[Completion], correct: list[float]) -> list[float]:
    """Kimi k1.5's length reward (Kimi Team 2025, "Kimi k1.5: Scaling Reinforcement Learning with LLMs",
    arXiv 2501.12599, sec. 2.3.3): over the group of one prompt, with min_len and max_len its shortest
    and longest responses,

        lambda_i = 0.5 - (len_i - min_len) / (max_len - min_len),
        r_i = lambda_i if correct, min(0, lambda_i) if wrong,

    so short correct answers gain, long ones lose, and wrong answers are never rewarded for being
    short. A group whose lengths are all equal gets 0. The paper adds it with a weight and warms it up
    (a weight schedule is not part of this function)."""
    lengths = [model_tokens(c) for c in completions]
    shortest, longest = min(lengths), max(lengths)
    if longest == shortest:
        return [0.0] * len(completions)
    out = []
    for length, score in zip(lengths, correct, strict=True):
        lam = 0.5 - (length - shortest) / (longest - shortest)
        out.append(lam if score >= 1.0 else min(0.0, lam))
    return out


@GROUP_REWARDS.register("laser")
def laser(
    completions: list[Completion],
    correct: list[float],
    *,
    target: Annotated[int, Field(ge=1)],
    bonus: Annotated[float, Field(gt=0)] = 0.5,
    mode: Literal["reward", "penalty", "hybrid"] = "reward",
    target_easy: Annotated[int, Field(ge=1)] | None = None,
    target_medium: Annotated[int, Field(ge=1)] | None = None,
) -> list[float]:
    """LASER, length-based step reward (Liu et al. 2025, "Learn to Reason Efficiently with Adaptive
    Length-based Reward Shaping", arXiv 2505.15612), as in the authors' code (hkust-nlp/Laser): for a
    correct response of length L and target length L_T,

        reward:  +bonus if L <= L_T, else 0
        penalty: -bonus if L >  L_T, else 0
        hybrid:  +bonus if L <= L_T, else -bonus

    and 0 for a wrong one (the paper's bonus is 0.5). It adds to the correctness reward. With
    ``target_easy`` / ``target_medium``, LASER-D's difficulty-aware targets: the group's accuracy a
    sorts its prompt into a bucket (a >= 2/3 easy, 1/3 <= a < 2/3 medium, else hard: ``target``), each
    with its own target, shorter for easier prompts. Limit: the targets are fixed hyper-parameters;
    LASER-D also re-chooses them during training from a monitoring set (not implemented)."""
    accuracy = sum(score >= 1.0 for score in correct) / len(correct)
    if accuracy >= 2 / 3 and target_easy is not None:
        limit = target_easy
    elif 1 / 3 <= accuracy < 2 / 3 and target_medium is not None:
        limit = target_medium
    else:
        limit = target
    out = []
    for completion, score in zip(completions, correct, strict=True):
        within = model_tokens(completion) <= limit
        if score < 1.0:
            out.append(0.0)
        elif mode == "reward":
            out.append(bonus if within else 0.0)
        elif mode == "penalty":
            out.append(0.0 if within else -bonus)
        else:
            out.append(bonus if within else -bonus)
    return out


@GROUP_REWARDS.register("concise")
def concise(
    completions: list[Completion],
    correct: list[float],
    *,
    max_tokens: Annotated[int, Field(ge=1)] | None = None,
) -> list[float]:
    """ConciseR's length-aware reward of its second stage, L-GRPO (Song & Zheng 2025, "Walk Before You
    Run! Concise LLM Reasoning via Reinforcement Learning", arXiv 2505.21178): only when all G
    responses of the group are correct, each earns its remaining-length share

        r_i = (L_max - L_i) / L_max,

    L_max being ``max_tokens`` or the budget each completion was sampled under; any wrong response
    in the group makes the term 0 for the whole group, so the policy is never pushed to be short
    where it is not yet reliably right ("walk before you run"). It adds to the correctness reward.
    Limit: the paper's exact scaling was not available to check (no released code); this is its
    stated rule, the remaining-budget ratio, unscaled (the term's weight scales it)."""
    if not all(score >= 1.0 for score in correct):
        return [0.0] * len(completions)
    out = []
    for completion in completions:
        budget = max_tokens or completion.budget
        if budget is None:
            raise ValueError("the completion carries no token budget: set the reward's max_tokens")
        out.append(max(budget - model_tokens(completion), 0) / budget)
    return out
