"""Advantage estimators: rewards of groups -> per-completion advantages.

Signature of every estimator::

    fn(rewards: Tensor[B, G], *, <hyper-parameters>) -> (advantages: Tensor[B, G], metrics: dict)

B prompts, G completions each. The trainer broadcasts each completion's advantage over its
tokens. Each estimator declares, keyword-only and with its paper's default, only the
hyper-parameters it uses (``algo.advantage: {name: grpo, eps: 1e-4}``). Estimators for binary
rewards (pass@k, BNPO) live in :mod:`rlvr.algos.advantages_binary`.

Group statistics are computed in float64 and a group whose rewards agree to within
``AGREE_TOL`` gets exactly zero advantage: in float32, eight rewards of 1.2 have a mean that
differs from 1.2 in the last bit, and dividing that by std + eps gave each +1.2e-3.

A second kind, the token-level estimators (GAE with a learned value model), is
:data:`rlvr.algos.value.TOKEN_ADVANTAGES`; ``algo.advantage`` names one of either kind.
"""

from typing import Annotated

import torch
from pydantic import Field

from rlvr.registry import Registry

ADVANTAGES: Registry = Registry("advantage estimator")
AGREE_TOL = 1e-9  # rewards of a group closer than this (max - min) count as equal: zero advantage
Eps = Annotated[float, Field(gt=0)]  # 0 would divide an agreeing group's zeros by zero


def agreeing(rewards: torch.Tensor) -> torch.Tensor:
    """[B, 1] bool: the groups whose rewards all agree (they carry no learning signal)."""
    return (rewards.amax(dim=1, keepdim=True) - rewards.amin(dim=1, keepdim=True)) <= AGREE_TOL


def centred(rewards: torch.Tensor) -> torch.Tensor:
    """r - mean(group) in float64, exactly 0 in groups that agree."""
    wide = rewards.double()
    return (wide - wide.mean(dim=1, keepdim=True)).masked_fill(agreeing(rewards), 0.0)


def group_metrics(advantages: torch.Tensor, rewards: torch.Tensor) -> dict:
    """Metrics every estimator reports: mean |A| and the share of groups whose rewards all agree."""
    return {
        "adv/mean_abs": advantages.abs().mean().item(),
        "adv/zero_std_frac": agreeing(rewards).float().mean().item(),
    }


@ADVANTAGES.register("grpo")
def grpo_advantage(rewards: torch.Tensor, *, eps: Eps = 1e-4) -> tuple[torch.Tensor, dict]:
    """GRPO (Shao et al. 2024, DeepSeekMath): A_i = (r_i - mean(r)) / (std(r) + eps) within a group.

    std is the unbiased (Bessel-corrected) sample std, as in DeepSeekMath's reference code and
    TRL. A group whose rewards all agree gets exactly zero advantage (no signal, not NaN, not
    float32 rounding noise divided by eps).
    """
    std = rewards.double().std(dim=1, keepdim=True)  # unbiased
    advantages = (centred(rewards) / (std + eps)).to(rewards.dtype)
    metrics = {**group_metrics(advantages, rewards), "adv/reward_std": std.mean().item()}
    return advantages, metrics


@ADVANTAGES.register("dr_grpo")
def dr_grpo_advantage(rewards: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Dr. GRPO (Liu et al. 2025, "Understanding R1-Zero-Like Training", arXiv 2503.20783):
    A_i = r_i - mean(r) within a group, without GRPO's division by the std.

    The paper shows the std division weights prompts that are nearly always solved (or failed)
    more than the rest (a difficulty bias). Its other half, dropping the per-sequence length
    normalization, is the aggregation ``token_sum_norm``.
    """
    advantages = centred(rewards).to(rewards.dtype)
    return advantages, group_metrics(advantages, rewards)


@ADVANTAGES.register("rloo")
def rloo_advantage(rewards: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """RLOO, REINFORCE leave-one-out (Kool et al. 2019; Ahmadian et al. 2024, "Back to Basics",
    arXiv 2402.14740): each completion's baseline is the mean of the other G - 1,

        A_i = r_i - (1 / (G - 1)) sum_{j != i} r_j = G / (G - 1) * (r_i - mean(r)).

    The baseline does not depend on r_i, so the estimate is unbiased. Needs G >= 2.
    """
    g = rewards.shape[1]
    if g < 2:
        raise ValueError(f"rloo needs at least 2 completions per prompt (rollout group size), got {g}")
    advantages = (g / (g - 1) * centred(rewards)).to(rewards.dtype)
    return advantages, group_metrics(advantages, rewards)


@ADVANTAGES.register("reinforce_pp")
def reinforce_pp_advantage(rewards: torch.Tensor, *, eps: Eps = 1e-6) -> tuple[torch.Tensor, dict]:
    """REINFORCE++-baseline (Hu 2025, "REINFORCE++", arXiv 2501.03262), for outcome rewards:
    subtract each group's mean, then divide by the std of those centred values over the WHOLE
    batch (global batch normalization), not the group's own std as GRPO does:

        c_i = r_i - mean(group),   A_i = c_i / (std_batch(c) + eps)   (std unbiased, over B*G values).

    The paper's normalization also subtracts the batch mean of c; it is exactly zero (every
    group's c sums to zero), so it is left out and groups keep summing to zero. Limits: per
    completion, not per token (the paper, like verl, whitens token-level values, weighting
    long completions more); KL in the reward is the trainer's business (``algo.kl_in_reward``).
    """
    c = centred(rewards)
    std = c.std() if c.numel() > 1 else c.new_tensor(0.0)
    advantages = (c / (std + eps)).to(rewards.dtype)
    return advantages, {**group_metrics(advantages, rewards), "adv/batch_std": std.item()}


@ADVANTAGES.register("reinforce_pp_plain")
def reinforce_pp_plain_advantage(rewards: torch.Tensor, *, eps: Eps = 1e-6) -> tuple[torch.Tensor, dict]:
    """REINFORCE++ without a group baseline (Hu 2025, arXiv 2501.03262; the paper's form for one
    completion per prompt): A_i = (r_i - mean_batch(r)) / (std_batch(r) + eps), mean and
    (unbiased) std over all B*G rewards. Groups do not sum to zero; an all-correct group still
    gets a positive advantage when the batch mean is lower. A batch whose rewards all agree gets 0.
    """
    wide = rewards.double()
    std = wide.std() if wide.numel() > 1 else wide.new_tensor(0.0)
    advantages = (wide - wide.mean()) / (std + eps)
    if float(wide.max() - wide.min()) <= AGREE_TOL:
        advantages = torch.zeros_like(advantages)
    advantages = advantages.to(rewards.dtype)
    return advantages, {**group_metrics(advantages, rewards), "adv/batch_std": std.item()}
