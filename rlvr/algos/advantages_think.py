"""Advantage estimators of the think modes (rlvr.rollout.think): identity (AdaptThink) and HBPO's.

Same signature as :mod:`rlvr.algos.advantages`: ``fn(rewards [B, G], *, <hyper-parameters>)``.
"""

from typing import Annotated

import torch
from pydantic import Field

from rlvr.algos.advantages import ADVANTAGES, centred, group_metrics
from rlvr.rewards.think import hbpo_curve


@ADVANTAGES.register("identity", ragged=True)
def identity_advantage(rewards: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """A_i = r_i: the reward is already an advantage, as AdaptThink's is (its "naive" estimator:
    ``adapt_think`` subtracts its own baseline R_ref(x)); no group statistics."""
    return rewards.clone(), group_metrics(rewards, rewards)


@ADVANTAGES.register("hbpo")
def hbpo_advantage(
    rewards: torch.Tensor,
    *,
    budgets: list[int],
    max_tokens: Annotated[int, Field(ge=1)],
    beta: Annotated[float, Field(gt=0)] = 4.0,
    eps: Annotated[float, Field(gt=0)] = 1e-6,
) -> tuple[torch.Tensor, dict]:
    """HBPO's hierarchical advantage (Lyu et al. 2025, arXiv 2507.15844, Algorithm 1): with the G rows
    of a group in k contiguous budget subgroups (``think.budgets``, in order; ``budgets`` and
    ``max_tokens`` here must be the same as the ``hbpo_budget`` reward's),

        A_ij = (mu_i - f2(b_i)) + (R_ij - mean(R)) / (std(R) + eps),

    mu_i the mean reward of subgroup i, f2(b_i) its ceiling beta cos(pi b_i / (2 L_max)), mean and
    (unbiased) std over the whole group. The intra-subgroup term (<= 0) says how far a subgroup falls
    short of what its budget allows; the inter term ranks every response against the whole group,
    which favours the budgets that reach their accuracy for fewer tokens. The authors' code adds the
    intra term twice (a bug, per its own paper); this follows the paper."""
    b, g = rewards.shape
    k = len(budgets)
    if k == 0 or g % k:
        raise ValueError(f"hbpo: {k} budgets must split each group of {g} evenly (think.budgets)")
    wide = rewards.double()
    inter = centred(rewards) / (wide.std(dim=1, keepdim=True) + eps)
    sub = wide.view(b, k, g // k).mean(dim=2)  # [B, k]
    ceilings = wide.new_tensor([hbpo_curve(budget, max_tokens, beta) for budget in budgets])
    intra = (sub - ceilings).repeat_interleave(g // k, dim=1)  # [B, G]
    advantages = (intra + inter).to(rewards.dtype)
    return advantages, {**group_metrics(advantages, rewards), "adv/hbpo_intra": intra.mean().item()}
