"""Losses on demonstrations: supervised token losses and LUFFY's off-policy policy-gradient term.

SFT losses, one signature::

    fn(logprobs, mask) -> (per_token_loss: Tensor[n, T], metrics)

``logprobs`` [n, T] carry gradients (log pi_theta of the demonstration's tokens), ``mask`` [n, T]
is 1.0 on trained demonstration tokens. The update sums them and divides by the step's
demonstration tokens (a token mean over the whole optimizer step, split-invariant like
:mod:`rlvr.algos.aggregation`), then weighs the result by ``sft.coef`` beside the RL loss.

Off-policy losses (demonstrations as members of a GRPO group), one signature::

    fn(logprobs, advantages, mask) -> (per_token_loss: Tensor[n, T], metrics)

aggregated with the group's on-policy tokens by the run's aggregation.
"""

from typing import Annotated

import torch
from pydantic import Field

from rlvr.algos.losses import masked_mean
from rlvr.registry import Registry

SFT_LOSSES: Registry = Registry("SFT loss")
OFF_POLICY_LOSSES: Registry = Registry("off-policy loss")


@SFT_LOSSES.register("nll")
def nll(logprobs: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Negative log-likelihood of the demonstration's tokens: supervised fine-tuning's loss."""
    return -logprobs * mask, {}


@SFT_LOSSES.register("chord_phi")
def chord_phi(logprobs: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """CHORD's token-wise weighting (Zhang et al. 2025, "On-Policy RL Meets Off-Policy Experts:
    Harmonizing SFT and RL via Dynamic Weighting", arXiv 2508.11408, CHORD-phi):
    loss_t = -phi(p_t) log p_t with phi(p) = p (1 - p), p = pi_theta(y_t) held constant.

    Tokens the policy already predicts (p -> 1) and tokens far from it (p -> 0) weigh little, so the
    expert data adjusts the policy without pulling it onto the expert's distribution wholesale.
    """
    with torch.no_grad():
        p = logprobs.exp()
        weight = p * (1.0 - p)
    return -weight * logprobs * mask, {"sft/chord_weight": masked_mean(weight, mask)}


@OFF_POLICY_LOSSES.register("luffy")
def luffy_shaping(
    logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    gamma: Annotated[float, Field(gt=0)] = 0.1,
) -> tuple[torch.Tensor, dict]:
    """LUFFY's policy shaping of off-policy tokens (Yan et al. 2025, "Learning to Reason under
    Off-Policy Guidance", arXiv 2504.14945, eq. 6): loss_t = -f(pi_theta(y_t)) A with
    f(x) = x / (x + gamma), and no clipping.

    The demonstrator's own probability is taken as 1 (LUFFY's choice: it is unknown or near 1), so
    the importance ratio is pi_theta(y_t). The gradient of f, gamma / (x + gamma)^2 times that of x,
    raises low-probability expert tokens more than plain importance sampling does, which keeps the
    policy's entropy from collapsing onto the demonstrations.
    """
    p = logprobs.exp()
    shaped = p / (p + gamma)
    with torch.no_grad():
        metrics = {"loss/off_policy_prob": masked_mean(p, mask)}
    return -shaped * advantages * mask, metrics


@OFF_POLICY_LOSSES.register("importance")
def off_policy_importance(
    logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, dict]:
    """Plain importance sampling of off-policy tokens with the demonstrator's probability taken as 1:
    loss_t = -pi_theta(y_t) A, unclipped (LUFFY's baseline without shaping, arXiv 2504.14945 eq. 5)."""
    p = logprobs.exp()
    with torch.no_grad():
        metrics = {"loss/off_policy_prob": masked_mean(p, mask)}
    return -p * advantages * mask, metrics


def sft_coefficient(step: int, *, coef: float, final: float, schedule: str, start: int, steps: int) -> float:
    """The auxiliary SFT loss's weight at RL step ``step`` (1-based) of a stage of ``steps`` starting
    after step ``start``: constant ``coef``, or decaying from ``coef`` to ``final`` linearly or on a
    cosine over the stage (CHORD-mu's decaying global coefficient, arXiv 2508.11408)."""
    import math

    if schedule == "constant" or steps <= 1:
        return coef
    progress = min(max((step - start - 1) / (steps - 1), 0.0), 1.0)
    if schedule == "linear":
        return coef + (final - coef) * progress
    return final + (coef - final) * 0.5 * (1.0 + math.cos(math.pi * progress))
