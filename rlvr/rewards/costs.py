"""Shaping terms that look at how a completion was produced, not whether it is right: DAPO's soft
overlong penalty, a cost per tool call, and OTC's tool-efficiency reward. Ordinary registered
rewards (the recipe lists them like any other; ``algo.overlong_cache_tokens`` and ``tools.cost``
are shorthands for them, see :mod:`rlvr.rewards.mix`). The formulas are in :mod:`rlvr.algos.shaping`.
"""

from typing import Annotated

import torch
from pydantic import Field

from rlvr.algos.shaping import otc_tool_reward, overlong_penalty
from rlvr.rewards import GROUP_REWARDS, REWARDS
from rlvr.types import Completion, Example


@REWARDS.register("overlong")
def overlong(
    completion: Completion,
    example: Example,
    *,
    cache_tokens: Annotated[int, Field(ge=1)],
    max_tokens: Annotated[int, Field(ge=1)] | None = None,
) -> float:
    """DAPO's soft overlong punishment (Yu et al. 2025, arXiv 2503.14476, eq. 13) of the completion's
    generated length L: 0 up to max_tokens - cache_tokens, then a ramp to -1 at max_tokens.
    ``max_tokens`` defaults to the budget the completion was sampled under (``rollout.max_new_tokens``;
    in multi-turn episodes ``tools.max_total_tokens``, and L counts tool tokens too)."""
    budget = max_tokens or completion.budget
    if budget is None:
        raise ValueError("the completion carries no token budget: set the reward's max_tokens")
    lengths = torch.tensor([float(len(completion.token_ids))])
    return overlong_penalty(lengths, max_tokens=budget, cache_tokens=cache_tokens).item()


@REWARDS.register("tool_calls")
def tool_calls(completion: Completion, example: Example) -> float:
    """Minus the number of tool calls the model made: with weight w, a cost of w per call
    (``tools.cost: per_call`` adds it with weight ``tools.cost_coef``)."""
    return -float(completion.tool_calls)


@GROUP_REWARDS.register("otc")
def otc(completions: list[Completion], correct: list[float], *, c: Annotated[float, Field(gt=0)] = 1.0) -> list[float]:
    """OTC-GRPO's tool-efficiency factor (Wang et al. 2025, arXiv 2504.14870) as an additive term:
    correct x (r_tool - 1), r_tool from :func:`rlvr.algos.shaping.otc_tool_reward` over the group
    (the optimal call count is the fewest among its correct answers). With the weight of the
    verifier's reward, a correct answer earns weight x r_tool in total, as in the paper's product
    (``tools.cost: otc`` adds it so)."""
    calls = torch.tensor([[float(x.tool_calls) for x in completions]])
    hits = (torch.tensor([correct]) >= 1.0).float()
    r_tool = otc_tool_reward(calls, hits, c=c)
    return (hits * (r_tool - 1.0)).flatten().tolist()
