"""Loss aggregation: per-token losses of one micro-batch -> its share of the batch's scalar loss.

Signature::

    fn(per_token: Tensor[n, T], mask: Tensor[n, T], *, batch_tokens: float, batch_sequences: int)
        -> (Tensor[], metrics)

Normalizers are counts over the whole (mini-)batch that one optimizer step sees, not over
the micro-batch, so summing the micro-batches' results under gradient accumulation gives
exactly the full-batch loss whatever the micro-batch split.
"""

import torch

from rlvr.registry import Registry

AGGREGATIONS: Registry = Registry("loss aggregation")


@AGGREGATIONS.register("token_mean")
def token_mean(
    per_token: torch.Tensor, mask: torch.Tensor, *, batch_tokens: float, batch_sequences: int
) -> tuple[torch.Tensor, dict]:
    """Mean over every trained token of the batch (DAPO's token-level loss; TRL's default):
    long and short completions weigh each of their tokens equally."""
    return (per_token * mask).sum() / max(batch_tokens, 1.0), {}


@AGGREGATIONS.register("seq_mean_token_mean")
def seq_mean_token_mean(
    per_token: torch.Tensor, mask: torch.Tensor, *, batch_tokens: float, batch_sequences: int
) -> tuple[torch.Tensor, dict]:
    """Mean over sequences of each sequence's token mean (the original GRPO objective,
    DeepSeekMath eq. 3): every completion weighs the same whatever its length."""
    per_sequence = (per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
    return per_sequence.sum() / max(batch_sequences, 1), {}
