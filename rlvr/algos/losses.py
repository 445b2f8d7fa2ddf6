"""Policy losses: per-token surrogate losses to be aggregated.

Signature of every loss::

    fn(logprobs, old_logprobs, advantages, mask, *, clip_low: float, clip_high: float)
        -> (per_token_loss: Tensor[N, T], metrics: dict)

``logprobs`` [N, T] carry gradients (current policy); ``old_logprobs`` [N, T] are the
sampling policy's; ``advantages`` [N, T]; ``mask`` [N, T] is 1.0 on trained tokens. The
returned loss is to be minimized; masked positions are zero.
"""

import torch

from rlvr.registry import Registry

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
    clip_low: float,
    clip_high: float,
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
