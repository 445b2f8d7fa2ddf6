"""Advantage estimators: rewards of groups -> per-completion advantages.

Signature of every estimator::

    fn(rewards: Tensor[B, G], *, eps: float) -> (advantages: Tensor[B, G], metrics: dict)

B prompts, G completions each. The trainer broadcasts each completion's advantage over its
tokens.
"""

import torch

from rlvr.registry import Registry

ADVANTAGES: Registry = Registry("advantage estimator")


@ADVANTAGES.register("grpo")
def grpo_advantage(rewards: torch.Tensor, *, eps: float) -> tuple[torch.Tensor, dict]:
    """GRPO (Shao et al. 2024, DeepSeekMath): A_i = (r_i - mean(r)) / (std(r) + eps) within a group.

    std is the unbiased (Bessel-corrected) sample std, as in DeepSeekMath's reference code and
    TRL. A group whose rewards all agree gets zero advantage (no signal, not NaN).
    """
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True)  # unbiased
    advantages = (rewards - mean) / (std + eps)
    zero_std = (std.squeeze(1) < 1e-8).float()
    metrics = {
        "adv/mean_abs": advantages.abs().mean().item(),
        "adv/zero_std_frac": zero_std.mean().item(),
        "adv/reward_std": std.mean().item(),
    }
    return advantages, metrics
