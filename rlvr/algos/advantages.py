"""Advantage estimators: rewards of groups -> per-completion advantages.

Signature of every estimator::

    fn(rewards: Tensor[B, G], *, <hyper-parameters>) -> (advantages: Tensor[B, G], metrics: dict)

B prompts, G completions each. The trainer broadcasts each completion's advantage over its
tokens. Each estimator declares, keyword-only, only the hyper-parameters it uses (``eps``,
``pass_k``); the caller passes the declared ones by name. Estimators for binary rewards
(pass@k, BNPO) live in :mod:`rlvr.algos.advantages_binary`.
"""

import torch

from rlvr.registry import Registry

ADVANTAGES: Registry = Registry("advantage estimator")


def group_metrics(advantages: torch.Tensor, rewards: torch.Tensor) -> dict:
    """Metrics every estimator reports: mean |A| and the share of groups whose rewards all agree."""
    agree = (rewards.max(dim=1).values - rewards.min(dim=1).values) < 1e-8
    return {"adv/mean_abs": advantages.abs().mean().item(), "adv/zero_std_frac": agree.float().mean().item()}


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


@ADVANTAGES.register("dr_grpo")
def dr_grpo_advantage(rewards: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Dr. GRPO (Liu et al. 2025, "Understanding R1-Zero-Like Training", arXiv 2503.20783):
    A_i = r_i - mean(r) within a group, without GRPO's division by the std.

    The paper shows the std division weights prompts that are nearly always solved (or failed)
    more than the rest (a difficulty bias). Its other half, dropping the per-sequence length
    normalization, is the aggregation ``token_sum_norm``.
    """
    advantages = rewards - rewards.mean(dim=1, keepdim=True)
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
    advantages = g / (g - 1) * (rewards - rewards.mean(dim=1, keepdim=True))
    return advantages, group_metrics(advantages, rewards)


@ADVANTAGES.register("reinforce_pp")
def reinforce_pp_advantage(rewards: torch.Tensor, *, eps: float = 1e-6) -> tuple[torch.Tensor, dict]:
    """REINFORCE++-baseline (Hu 2025, "REINFORCE++", arXiv 2501.03262), for outcome rewards:
    subtract each group's mean, then divide by the std of those centred values over the WHOLE
    batch (global batch normalization), not the group's own std as GRPO does:

        c_i = r_i - mean(group),   A_i = c_i / (std_batch(c) + eps)   (std unbiased, over B*G values).

    The paper's normalization also subtracts the batch mean of c; it is exactly zero (every
    group's c sums to zero), so it is left out and groups keep summing to zero. Limits: per
    completion, not per token (the paper, like verl, whitens token-level values, weighting
    long completions more); KL in the reward is the trainer's business (``algo.kl_in_reward``).
    """
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    std = centred.std() if centred.numel() > 1 else centred.new_tensor(0.0)
    advantages = centred / (std + eps)
    return advantages, {**group_metrics(advantages, rewards), "adv/batch_std": std.item()}


@ADVANTAGES.register("reinforce_pp_plain")
def reinforce_pp_plain_advantage(rewards: torch.Tensor, *, eps: float = 1e-6) -> tuple[torch.Tensor, dict]:
    """REINFORCE++ without a group baseline (Hu 2025, arXiv 2501.03262; the paper's form for one
    completion per prompt): A_i = (r_i - mean_batch(r)) / (std_batch(r) + eps), mean and
    (unbiased) std over all B*G rewards. Groups do not sum to zero; an all-correct group still
    gets a positive advantage when the batch mean is lower.
    """
    mean = rewards.mean()
    std = rewards.std() if rewards.numel() > 1 else rewards.new_tensor(0.0)
    advantages = (rewards - mean) / (std + eps)
    return advantages, {**group_metrics(advantages, rewards), "adv/batch_std": std.item()}
