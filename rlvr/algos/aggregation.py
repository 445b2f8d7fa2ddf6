"""Loss aggregation: per-token losses of one micro-batch -> its share of the batch's scalar loss.

Signature::

    fn(per_token: Tensor[n, T], mask: Tensor[n, T], *, batch_tokens: float, batch_sequences: int,
       max_tokens: int) -> (Tensor[], metrics)

Normalizers are counts over the whole (mini-)batch that one optimizer step sees, not over
the micro-batch, so summing the micro-batches' results under gradient accumulation gives
exactly the full-batch loss whatever the micro-batch split. ``max_tokens`` is the constant
generation budget (``rollout.max_new_tokens``); only ``token_sum_norm`` uses it.
"""

import torch

from rlvr.registry import Registry

AGGREGATIONS: Registry = Registry("loss aggregation", context=("batch_tokens", "batch_sequences", "max_tokens"))


@AGGREGATIONS.register("token_mean")
def token_mean(
    per_token: torch.Tensor, mask: torch.Tensor, *, batch_tokens: float, batch_sequences: int, max_tokens: int
) -> tuple[torch.Tensor, dict]:
    """Mean over every trained token of the batch (DAPO's token-level loss; TRL's default):
    long and short completions weigh each of their tokens equally."""
    return (per_token * mask).sum() / max(batch_tokens, 1.0), {}


@AGGREGATIONS.register("seq_mean_token_mean")
def seq_mean_token_mean(
    per_token: torch.Tensor, mask: torch.Tensor, *, batch_tokens: float, batch_sequences: int, max_tokens: int
) -> tuple[torch.Tensor, dict]:
    """Mean over sequences of each sequence's token mean (the original GRPO objective,
    DeepSeekMath eq. 3): every completion weighs the same whatever its length."""
    per_sequence = (per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
    return per_sequence.sum() / max(batch_sequences, 1), {}


@AGGREGATIONS.register("seq_mean_token_sum")
def seq_mean_token_sum(
    per_token: torch.Tensor, mask: torch.Tensor, *, batch_tokens: float, batch_sequences: int, max_tokens: int
) -> tuple[torch.Tensor, dict]:
    """(1/N) sum_i sum_t L_it m_it: per-sequence sums, averaged over sequences. Each token
    weighs the same, as in token_mean, but the scale grows with completion length."""
    return (per_token * mask).sum() / max(batch_sequences, 1), {}


@AGGREGATIONS.register("token_sum_norm")
def token_sum_norm(
    per_token: torch.Tensor, mask: torch.Tensor, *, batch_tokens: float, batch_sequences: int, max_tokens: int
) -> tuple[torch.Tensor, dict]:
    """Dr. GRPO's constant normalizer (Liu et al. 2025, arXiv 2503.20783):
    sum_{i,t} L_it m_it / (N * max_tokens). Unlike a per-sequence 1/|o_i| it does not favour
    short correct answers and long wrong ones (the paper's length bias), and unlike token_mean
    the normalizer does not change with the batch's lengths."""
    return (per_token * mask).sum() / max(batch_sequences * max_tokens, 1), {}
