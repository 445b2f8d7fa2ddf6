"""Advantage estimators: rewards of groups -> per-completion advantages.

Signature of every estimator::

    fn(rewards: Tensor[B, G], *, <hyper-parameters>) -> (advantages: Tensor[B, G], metrics: dict)

B prompts, G completions each. The trainer broadcasts each completion's advantage over its
tokens. Ragged groups (a per-prompt rollout allocation, :mod:`rlvr.samplers.allocation`) arrive
padded to the largest group with NaN; estimators registered with ``ragged=True`` compute every
group statistic over the real entries only (:func:`group_mean`, :func:`group_std`,
:func:`group_count`) and return NaN at the padding, which the trainer drops. The others need equal
groups; the config refuses them with a ragged allocation. Each estimator declares, keyword-only
and with its paper's default, only the hyper-parameters it uses (``algo.advantage: {name: grpo,
eps: 1e-4}``). Estimators for binary rewards (pass@k, BNPO) live in :mod:`rlvr.algos.advantages_binary`.

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


def group_count(rewards: torch.Tensor) -> torch.Tensor:
    """[B, 1] how many real (non-NaN) rewards each group has."""
    return (~rewards.isnan()).sum(dim=1, keepdim=True)


def group_mean(rewards: torch.Tensor) -> torch.Tensor:
    """[B, 1] float64 mean of each group's real rewards (NaN padding ignored)."""
    return rewards.double().nanmean(dim=1, keepdim=True)


def group_std(rewards: torch.Tensor) -> torch.Tensor:
    """[B, 1] float64 unbiased (Bessel-corrected) std of each group's real rewards; NaN for one reward."""
    wide = rewards.double()
    n = group_count(rewards)
    squares = (wide - group_mean(rewards)).square().nansum(dim=1, keepdim=True)
    return (squares / (n - 1)).sqrt()


def agreeing(rewards: torch.Tensor) -> torch.Tensor:
    """[B, 1] bool: the groups whose rewards all agree (they carry no learning signal)."""
    real = ~rewards.isnan()
    high = rewards.masked_fill(~real, -torch.inf).amax(dim=1, keepdim=True)
    low = rewards.masked_fill(~real, torch.inf).amin(dim=1, keepdim=True)
    return (high - low) <= AGREE_TOL


def centred(rewards: torch.Tensor) -> torch.Tensor:
    """r - mean(group) in float64, exactly 0 in groups that agree (NaN stays NaN)."""
    return (rewards.double() - group_mean(rewards)).masked_fill(agreeing(rewards) & ~rewards.isnan(), 0.0)


def group_metrics(advantages: torch.Tensor, rewards: torch.Tensor) -> dict:
    """Metrics every estimator reports: mean |A| (over real rows) and the share of groups whose rewards all agree."""
    return {
        "adv/mean_abs": advantages.abs().nanmean().item(),
        "adv/zero_std_frac": agreeing(rewards).float().mean().item(),
    }


@ADVANTAGES.register("grpo", ragged=True)
def grpo_advantage(rewards: torch.Tensor, *, eps: Eps = 1e-4) -> tuple[torch.Tensor, dict]:
    """GRPO (Shao et al. 2024, DeepSeekMath): A_i = (r_i - mean(r)) / (std(r) + eps) within a group.

    std is the unbiased (Bessel-corrected) sample std, as in DeepSeekMath's reference code and
    TRL. A group whose rewards all agree gets exactly zero advantage (no signal, not NaN, not
    float32 rounding noise divided by eps).
    """
    std = group_std(rewards)  # unbiased
    advantages = (centred(rewards) / (std + eps)).to(rewards.dtype)
    metrics = {**group_metrics(advantages, rewards), "adv/reward_std": std.nanmean().item()}
    return advantages, metrics


@ADVANTAGES.register("dr_grpo", ragged=True)
def dr_grpo_advantage(rewards: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Dr. GRPO (Liu et al. 2025, "Understanding R1-Zero-Like Training", arXiv 2503.20783):
    A_i = r_i - mean(r) within a group, without GRPO's division by the std.

    The paper shows the std division weights prompts that are nearly always solved (or failed)
    more than the rest (a difficulty bias). Its other half, dropping the per-sequence length
    normalization, is the aggregation ``token_sum_norm``.
    """
    advantages = centred(rewards).to(rewards.dtype)
    return advantages, group_metrics(advantages, rewards)


@ADVANTAGES.register("rloo", ragged=True)
def rloo_advantage(rewards: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """RLOO, REINFORCE leave-one-out (Kool et al. 2019; Ahmadian et al. 2024, "Back to Basics",
    arXiv 2402.14740): each completion's baseline is the mean of the other G - 1,

        A_i = r_i - (1 / (G - 1)) sum_{j != i} r_j = G / (G - 1) * (r_i - mean(r)).

    The baseline does not depend on r_i, so the estimate is unbiased. Needs G >= 2 (in a ragged
    batch, each group's own G).
    """
    g = group_count(rewards)
    if int(g.min()) < 2:
        raise ValueError(f"rloo needs at least 2 completions per prompt (rollout group size), got {int(g.min())}")
    advantages = (g / (g - 1) * centred(rewards)).to(rewards.dtype)
    return advantages, group_metrics(advantages, rewards)


@ADVANTAGES.register("reinforce_pp", ragged=True)
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
    real = c[~c.isnan()]
    std = real.std() if real.numel() > 1 else c.new_tensor(0.0)
    advantages = (c / (std + eps)).to(rewards.dtype)
    return advantages, {**group_metrics(advantages, rewards), "adv/batch_std": std.item()}


@ADVANTAGES.register("reinforce_pp_plain", ragged=True)
def reinforce_pp_plain_advantage(rewards: torch.Tensor, *, eps: Eps = 1e-6) -> tuple[torch.Tensor, dict]:
    """REINFORCE++ without a group baseline (Hu 2025, arXiv 2501.03262; the paper's form for one
    completion per prompt): A_i = (r_i - mean_batch(r)) / (std_batch(r) + eps), mean and
    (unbiased) std over all B*G rewards. Groups do not sum to zero; an all-correct group still
    gets a positive advantage when the batch mean is lower. A batch whose rewards all agree gets 0.
    """
    wide = rewards.double()
    real = wide[~wide.isnan()]
    std = real.std() if real.numel() > 1 else wide.new_tensor(0.0)
    advantages = (wide - real.mean()) / (std + eps)
    if float(real.max() - real.min()) <= AGREE_TOL:
        advantages = torch.zeros_like(advantages)
    advantages = advantages.to(rewards.dtype)
    return advantages, {**group_metrics(advantages, rewards), "adv/batch_std": std.item()}
