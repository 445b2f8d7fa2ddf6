"""Policy losses: per-token surrogate losses to be aggregated.

Signature of every loss::

    fn(logprobs, old_logprobs, advantages, mask, *, <hyper-parameters>)
        -> (per_token_loss: Tensor[N, T], metrics: dict)

``logprobs`` [N, T] carry gradients (current policy); ``old_logprobs`` [N, T] are the
sampling policy's; ``advantages`` [N, T]; ``mask`` [N, T] is 1.0 on trained tokens. The
returned loss is to be minimized; masked positions are zero. Each loss declares, keyword-only
and with its paper's defaults, only the hyper-parameters it uses; a recipe sets them under the
loss's own key (``algo.policy_loss: {name: gspo, clip_high: 4e-4}``), checked against the
signature (bounds in ``Annotated``) at load.

This module: the clipped family (PPO, dual-clip, GSPO), and the truncated importance weights
for the rollout engine / trainer gap. REINFORCE and CISPO, whose every token keeps a gradient,
are in :mod:`rlvr.algos.losses_reinforce`.
"""

from typing import Annotated

import torch
from pydantic import Field

from rlvr.registry import Registry

LowClip = Annotated[float, Field(gt=0, lt=1)]  # ratio floor 1 - clip_low stays positive
HighClip = Annotated[float, Field(gt=0)]

POLICY_LOSSES: Registry = Registry("policy loss")


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> float:
    return (values * mask).sum().item() / max(mask.sum().item(), 1.0)


@POLICY_LOSSES.register("ppo_clip")
def ppo_clip_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_low: LowClip = 0.2,
    clip_high: HighClip = 0.2,
) -> tuple[torch.Tensor, dict]:
    """PPO clipped surrogate (Schulman et al. 2017), per token, as GRPO uses it.

    ratio = exp(logp - logp_old); loss = -min(ratio * A, clip(ratio, 1 - clip_low, 1 + clip_high) * A).
    With clip_low == clip_high this is PPO's symmetric clip. Where the clipped branch is
    taken the gradient is exactly zero.
    """
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high) * advantages
    loss = -torch.minimum(unclipped, clipped) * mask
    with torch.no_grad():
        was_clipped = (clipped < unclipped).float()
        metrics = {
            "loss/clip_frac": masked_mean(was_clipped, mask),
            "loss/ratio_mean": masked_mean(ratio, mask),
            "loss/ratio_max": (ratio * mask).max().item() if mask.any() else 1.0,
        }
    return loss, metrics


@POLICY_LOSSES.register("dual_clip")
def dual_clip_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_low: LowClip = 0.2,
    clip_high: HighClip = 0.2,
    dual_clip_c: Annotated[float, Field(gt=1)] = 3.0,
) -> tuple[torch.Tensor, dict]:
    """Dual-clip PPO (Ye et al. 2020, "Mastering Complex Control in MOBA Games with Deep
    Reinforcement Learning", arXiv 1912.09729): for A < 0 PPO's objective is unbounded
    below as the ratio grows, so it is also floored at c * A:

        A >= 0: loss = -min(rho A, clip(rho, 1 - clip_low, 1 + clip_high) A)   (= ppo_clip)
        A <  0: loss = -max(min(rho A, clip(rho, ...) A), c A),   c = dual_clip_c > 1 (paper: 3).

    Where the floor binds (A < 0 and rho > c) the gradient is exactly zero.
    """
    if dual_clip_c <= 1.0:
        raise ValueError(f"algo.dual_clip_c must be > 1, got {dual_clip_c}")
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high) * advantages
    surrogate = torch.minimum(unclipped, clipped)
    floor = dual_clip_c * advantages
    objective = torch.where(advantages < 0, torch.maximum(surrogate, floor), surrogate)
    loss = -objective * mask
    with torch.no_grad():
        metrics = {
            "loss/clip_frac": masked_mean((clipped < unclipped).float(), mask),
            "loss/dual_clip_frac": masked_mean(((advantages < 0) & (surrogate < floor)).float(), mask),
            "loss/ratio_mean": masked_mean(ratio, mask),
        }
    return loss, metrics


@POLICY_LOSSES.register("gspo")
def gspo_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_low: LowClip = 3e-4,
    clip_high: HighClip = 4e-4,
) -> tuple[torch.Tensor, dict]:
    """GSPO (Zheng et al. 2025, "Group Sequence Policy Optimization", arXiv 2507.18071): one
    length-normalized importance ratio per sequence, clipped per sequence:

        s_i = (pi(y_i) / pi_old(y_i))^(1 / |y_i|) = exp(mean_t over y_i's trained tokens of (logp - logp_old))
        L_i = -min(s_i A_i, clip(s_i, 1 - clip_low, 1 + clip_high) A_i)

    A_i is the masked mean of the sequence's advantages (the trainer broadcasts one value per
    completion, so this is that value). L_i is returned on each of the sequence's trained tokens,
    so ``algo.aggregation: seq_mean_token_mean`` yields GSPO's (1/N) sum_i L_i. The paper's clip
    ranges are tiny because s_i is a per-token geometric mean: 3e-4 / 4e-4 are the defaults here;
    PPO's 0.2 would almost never clip. Only the sequence form, not GSPO-token. A sequence beyond
    its clip bound gets exactly zero gradient.
    """
    lengths = mask.sum(dim=1).clamp(min=1.0)
    seq_ratio = torch.exp(((logprobs - old_logprobs) * mask).sum(dim=1) / lengths)  # [N]
    seq_adv = (advantages * mask).sum(dim=1) / lengths
    unclipped = seq_ratio * seq_adv
    clipped = torch.clamp(seq_ratio, 1.0 - clip_low, 1.0 + clip_high) * seq_adv
    seq_loss = -torch.minimum(unclipped, clipped)
    loss = seq_loss.unsqueeze(1) * mask
    with torch.no_grad():
        has_tokens = (mask.sum(dim=1) > 0).float()
        n = max(has_tokens.sum().item(), 1.0)
        metrics = {
            "loss/clip_frac": ((clipped < unclipped).float() * has_tokens).sum().item() / n,
            "loss/seq_ratio_mean": (seq_ratio * has_tokens).sum().item() / n,
        }
    return loss, metrics


def truncated_is_weights(
    trainer_logprobs: torch.Tensor, rollout_logprobs: torch.Tensor, mask: torch.Tensor, *, cap: float = 2.0
) -> tuple[torch.Tensor, dict]:
    """Truncated importance sampling (TIS) for the rollout engine / trainer mismatch (Yao et al.
    2025, "Your Efficient RL Framework Secretly Brings You Off-Policy RL Training"; verl's
    ``tis_imp_ratio_cap``): the engine samples from pi_rollout, which differs numerically from
    the trainer's pi for the same weights, so each token's loss is reweighted by

        w_t = min(pi_trainer(y_t) / pi_rollout(y_t), cap) = min(exp(trainer - rollout), cap),

    without gradient, 0 on masked positions. Truncating at ``cap`` (the authors' examples use
    2) trades a little bias for bounded variance. Returns ``(weights [N, T], metrics)``.
    """
    with torch.no_grad():
        ratio = torch.exp(trainer_logprobs - rollout_logprobs)
        weights = torch.clamp(ratio, max=cap) * mask
        metrics = {
            "tis/weight_mean": masked_mean(weights, mask),
            "tis/capped_frac": masked_mean((ratio > cap).float(), mask),
        }
    return weights, metrics
