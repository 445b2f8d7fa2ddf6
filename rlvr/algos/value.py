"""PPO with a learned value model: token-level advantage estimators (GAE) and the clipped value loss.

Token-level advantage estimators are the second kind of ``algo.advantage`` (the first, group
estimators over [B, G] rewards, is :data:`rlvr.algos.advantages.ADVANTAGES`). Signature::

    fn(token_rewards: Tensor[N, T], values: Tensor[N, T], mask: Tensor[N, T], *, <hyper-parameters>)
        -> ((advantages: Tensor[N, T], returns: Tensor[N, T]), metrics)

An estimator of this kind needs a value model (``critic.model``); the config asks for one by the
kind, never by the name.
"""

from typing import Annotated

import torch
from pydantic import Field

from rlvr.algos.losses import masked_mean
from rlvr.registry import Registry

TOKEN_ADVANTAGES: Registry = Registry("token-level advantage estimator")


def gae(
    token_rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, *, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation (Schulman et al. 2016, arXiv 1506.02438), per sequence
    over its trained tokens:

        delta_t = r_t + gamma * V_{t+1} - V_t,   A_t = delta_t + gamma * lam * A_{t+1},
        returns_t = A_t + V_t,

    with V and A after a sequence's last trained token taken as 0 (the completion ends: terminal).
    Inputs [N, T], right-padded; ``token_rewards`` carries the outcome reward on the last trained
    token (and any per-token terms, e.g. a KL penalty). Masked positions are skipped, not
    treated as ends: t + 1 means the next trained token, so environment tokens in the middle
    of a multi-turn completion pass the bootstrap through; rewards put on them are ignored.
    Outputs are 0 on masked positions, without gradient. Defaults: gamma = 1 (no discount
    within a completion), lam = 0.95.
    """
    with torch.no_grad():
        n, t_len = token_rewards.shape
        advantages = torch.zeros_like(token_rewards)
        next_value = token_rewards.new_zeros(n)
        next_adv = token_rewards.new_zeros(n)
        for t in reversed(range(t_len)):
            m = mask[:, t]
            delta = token_rewards[:, t] + gamma * next_value - values[:, t]
            adv = delta + gamma * lam * next_adv
            advantages[:, t] = adv * m
            next_value = torch.where(m > 0, values[:, t], next_value)
            next_adv = torch.where(m > 0, adv, next_adv)
        returns = (advantages + values) * mask
    return advantages, returns


@TOKEN_ADVANTAGES.register("gae")
def gae_advantage(
    token_rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    *,
    gamma: Annotated[float, Field(gt=0, le=1)] = 1.0,
    lam: Annotated[float, Field(ge=0, le=1)] = 0.95,
) -> tuple[tuple[torch.Tensor, torch.Tensor], dict]:
    """GAE (Schulman et al. 2016) as a registered token-level estimator: :func:`gae`, plus metrics.
    ``algo.advantage: {name: gae, gamma: 1.0, lam: 0.95}``."""
    advantages, returns = gae(token_rewards, values, mask, gamma=gamma, lam=lam)
    tokens = max(mask.sum().item(), 1.0)
    metrics = {
        "adv/mean_abs": (advantages.abs() * mask).sum().item() / tokens,
        "critic/value_mean": (values * mask).sum().item() / tokens,
    }
    return (advantages, returns), metrics


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    *,
    value_clip: float = 0.2,
) -> tuple[torch.Tensor, dict]:
    """PPO's clipped value loss (Schulman et al. 2017; as in OpenAI baselines' ppo2), per token:

        L_t = 0.5 * max((V_t - R_t)^2, (clip(V_t, V_old_t - eps, V_old_t + eps) - R_t)^2),  eps = value_clip,

    the pessimistic of the unclipped and clipped errors, so the value cannot profit from moving
    more than eps from the rollout-time value. Where the clipped branch binds and is larger,
    the gradient is exactly zero. Returns ``(per_token [N, T], metrics)``, 0 on masked positions.
    """
    clipped_values = old_values + torch.clamp(values - old_values, -value_clip, value_clip)
    unclipped_err = (values - returns) ** 2
    clipped_err = (clipped_values - returns) ** 2
    loss = 0.5 * torch.maximum(unclipped_err, clipped_err) * mask
    with torch.no_grad():
        metrics = {
            "critic/clip_frac": masked_mean((clipped_err > unclipped_err).float(), mask),
            "critic/value_mean": masked_mean(values, mask),
            "critic/return_mean": masked_mean(returns, mask),
        }
    return loss, metrics
