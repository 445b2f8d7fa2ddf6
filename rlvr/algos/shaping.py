"""Reward shaping that depends on the completion, not on its correctness."""

import torch


def overlong_penalty(lengths: torch.Tensor, *, max_tokens: int, cache_tokens: int) -> torch.Tensor:
    """DAPO's soft overlong punishment (Yu et al. 2025, "DAPO", arXiv 2503.14476, eq. 13),
    added to the reward of each completion of length L (generated tokens):

        0                                   if L <= max_tokens - cache_tokens
        ((max_tokens - cache_tokens) - L) / cache_tokens   if max_tokens - cache_tokens < L <= max_tokens
        -1                                  if L > max_tokens

    A linear ramp from 0 to -1 over the last ``cache_tokens`` of the budget, so a truncated
    answer is not punished as hard as a wrong one out of the blue. ``lengths`` [N] -> [N] float.
    (A rollout capped at max_tokens never exceeds it, so the last case is for completeness.)
    """
    if not 0 < cache_tokens <= max_tokens:
        raise ValueError(
            f"algo.overlong_cache_tokens must be in (0, rollout.max_new_tokens={max_tokens}], got {cache_tokens}"
        )
    lengths = lengths.float()
    free = max_tokens - cache_tokens
    ramp = (free - lengths) / cache_tokens
    return torch.where(lengths <= free, torch.zeros_like(lengths), torch.where(lengths <= max_tokens, ramp, -1.0))
