"""Policy losses of the REINFORCE form, loss_t = -w_t * A_t * log pi(y_t), w_t without gradient:
every token keeps a gradient (nothing is clipped away). Same signature and registry as
:mod:`rlvr.algos.losses`.
"""

from typing import Annotated

import torch
from pydantic import Field

from rlvr.algos.losses import POLICY_LOSSES, masked_mean


@POLICY_LOSSES.register("reinforce")
def reinforce_loss(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, dict]:
    """REINFORCE (Williams 1992): loss_t = -A_t * log pi(y_t); gradient -A_t per token.

    No importance ratio: correct only on-policy (one inner epoch, one mini-batch); with
    several updates per rollout use ``ppo_clip`` or ``cispo``. ``old_logprobs`` is unused.
    """
    return -advantages * logprobs * mask, {}


@POLICY_LOSSES.register("cispo")
def cispo_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    cispo_clip_low: Annotated[float, Field(ge=0)] = 1.0,
    cispo_clip_high: Annotated[float, Field(gt=0)] = 0.28,
) -> tuple[torch.Tensor, dict]:
    """CISPO (MiniMax 2025, "MiniMax-M1", arXiv 2506.13585): clip the importance
    weight, not the update:

        loss_t = -sg(clip(rho_t, 1 - cispo_clip_low, 1 + cispo_clip_high)) * A_t * log pi(y_t),

    sg = stop-gradient, so d loss_t / d logp_t = -clip(rho_t) A_t: nonzero for every token,
    even beyond the bound (PPO would drop it). The report normalizes by the batch's token count
    (``algo.aggregation: token_mean``). Defaults: the report sets the lower bound "large" so
    that there is none (cispo_clip_low = 1.0 clamps at 0, which a ratio never goes below) and
    tunes only the upper; it gives no value that I could find, so 0.28 (DAPO's clip-higher) is
    a choice here; verl's CISPO example uses 0.2.
    """
    with torch.no_grad():
        ratio = torch.exp(logprobs - old_logprobs)
        weight = torch.clamp(ratio, 1.0 - cispo_clip_low, 1.0 + cispo_clip_high)
        metrics = {
            "loss/is_clip_frac": masked_mean((weight != ratio).float(), mask),
            "loss/ratio_mean": masked_mean(ratio, mask),
        }
    return -weight * advantages * logprobs * mask, metrics
