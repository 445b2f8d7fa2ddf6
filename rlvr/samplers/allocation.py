"""Rollouts per prompt: a step's rollout budget split across its prompts, evenly or by uncertainty.

An allocation is ``fn(rewards, budget, *, total, <hyper-parameters>) -> list[int]``: given each
prompt's verifier outcomes so far this step (``rewards[b]``, empty before the first round) and the
rollouts still to spend (``budget``, of ``total = prompts_per_step x group_size``), how many more each
prompt gets now. The collector (:mod:`rlvr.collect`) calls it round after round until the budget is
spent or it returns all zeros, so an allocation decides its own rounds. Groups then have different
sizes: advantages (NaN-padded, :mod:`rlvr.algos.advantages`), group rewards and metrics take them.
"""

import math
import statistics
from typing import Annotated

from pydantic import Field

from rlvr.errors import ConfigError
from rlvr.registry import Registry

ALLOCATIONS: Registry = Registry("rollout allocation", context=("total",))

# Student's t quantiles t_{0.975, df} for df = 1..30 (two-sided 95%); beyond, the table's tail rows.
T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)  # fmt: skip


def t_quantile(df: int) -> float:
    """t_{0.975, df} from the standard table (df 1-30 exact to 3 decimals; 40, 60, 120, then 1.960)."""
    if df <= len(T_975):
        return T_975[df - 1]
    return 2.021 if df <= 40 else 2.000 if df <= 60 else 1.980 if df <= 120 else 1.960


def half_width(std: float, n: int) -> float:
    """Half-width of the 95% t confidence interval of a mean of ``n`` values with sample std ``std``."""
    return t_quantile(n - 1) * std / math.sqrt(n)


def xrpo_priority(std: float, n: int, total: int, explore: float) -> float:
    """XRPO's priority of one more rollout for a prompt with ``n`` so far: the shrink of its confidence
    interval, h(n) - h(n + 1) with the current sample std, plus explore * sqrt(ln(total) / n)."""
    return half_width(std, n) - half_width(std, n + 1) + explore * math.sqrt(math.log(max(total, 2)) / n)


@ALLOCATIONS.register("fixed")
def fixed(rewards: list[list[float]], budget: int, *, total: int) -> list[int]:
    """``rollout.group_size`` rollouts for every prompt, in one round (GRPO's allocation)."""
    if any(rewards):
        return [0] * len(rewards)
    return [total // len(rewards)] * len(rewards)


@ALLOCATIONS.register("xrpo")
def xrpo(
    rewards: list[list[float]],
    budget: int,
    *,
    total: int,
    initial: Annotated[int, Field(ge=2)] = 4,
    rounds: Annotated[int, Field(ge=1)] = 2,
    max_per_prompt: Annotated[int, Field(ge=2)] = 32,
    explore: Annotated[float, Field(ge=0)] = 0.1,
) -> list[int]:
    """XRPO's rollout allocator (Bamba et al. 2025, "XRPO: Pushing the limits of GRPO with Targeted
    Exploration and Exploitation", arXiv 2510.06672): every prompt first gets ``initial`` rollouts;
    the rest of the step's budget goes out in ``rounds`` rounds, one rollout at a time to the prompt
    with the highest priority

        Pi_q = h(n_q) - h(n_q + 1) + explore * sqrt(ln N / n_q),   h(n) = t_{0.975, n-1} s_q / sqrt(n),

    s_q the sample std of the prompt's verifier outcomes so far and N the rollouts spent this step: a
    prompt whose outcome is uncertain (right and wrong answers both seen) gets more rollouts, one whose
    group already agrees gets only the exploration bonus. The priorities are recomputed as each rollout
    is handed out (its n grows; s stays until the round's outcomes are in). No prompt gets more than
    ``max_per_prompt``. Limits: XRPO's in-context seeding of zero-reward prompts is the separate
    ``hints`` section here, and its novelty-aware advantage sharpening is not implemented; the default
    ``explore`` is this implementation's choice, not the paper's.
    """
    if not any(rewards):
        return [min(initial, max_per_prompt)] * len(rewards)
    pool = total - initial * len(rewards)
    share = min(budget, math.ceil(pool / rounds))
    counts = [len(r) for r in rewards]
    stds = [statistics.stdev(r) if len(r) > 1 else 0.0 for r in rewards]  # sample std
    extra = [0] * len(rewards)
    spent = sum(counts)
    for _ in range(share):
        open_ = [b for b in range(len(rewards)) if counts[b] + extra[b] < max_per_prompt]
        if not open_:
            break
        best = max(open_, key=lambda b: xrpo_priority(stds[b], counts[b] + extra[b], spent, explore))
        extra[best] += 1
        spent += 1
    return extra


def check_allocation(params: dict, group_size: int) -> None:
    """An allocation's keys against the group size: the first round must fit the budget."""
    initial = params.get("initial")
    if initial is not None and initial > group_size:
        raise ConfigError(
            f"rollout.allocation.initial={initial} exceeds rollout.group_size={group_size}: the step's budget "
            "(prompts_per_step x group_size) must cover the first round"
        )
    ceiling = params.get("max_per_prompt")
    if ceiling is not None and initial is not None and ceiling < initial:
        raise ConfigError(f"rollout.allocation.max_per_prompt={ceiling} is below initial={initial}")
