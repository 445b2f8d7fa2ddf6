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


def otc_tool_reward(calls: torch.Tensor, correct: torch.Tensor, *, c: float) -> torch.Tensor:
    """OTC-GRPO's tool-efficiency reward (Wang et al. 2025, "Acting Less is Reasoning More:
    Teaching Model to Act Efficiently", arXiv 2504.14870, sec. 3), for [B, G] tool-call counts m
    and 0/1 correctness; the result multiplies the correctness reward.

    n, the optimal number of calls for a question, is estimated per group as the fewest calls
    among its correct responses. With f(m, n) = 0 if m = n = 0, m if n = 0, else 2mn / (m + n):

        r_tool = 1                      if f(m, n) = n = 0
                 cos(m * pi / (2m + c)) if n = 0      (any call is one too many)
                 sin(f(m, n) * pi / (2n)) otherwise   (1 at m = n, less for fewer or more calls)

    A group with no correct response has no estimate of n: r_tool = 1 there (its correctness
    reward is 0 anyway). Uncertain: the paper's choice of c; rlvr defaults to c = 1.
    """
    calls, correct = calls.float(), correct.float()
    big = torch.finfo(calls.dtype).max
    optimal = torch.where(correct > 0, calls, torch.full_like(calls, big)).min(dim=1, keepdim=True).values
    has_optimal = optimal < big
    n = torch.where(has_optimal, optimal, torch.zeros_like(optimal)).expand_as(calls)
    f = torch.where(n == 0, calls, 2 * calls * n / (calls + n).clamp(min=1e-9))
    cosine = torch.cos(calls * torch.pi / (2 * calls + c))
    sine = torch.sin(f * torch.pi / (2 * n.clamp(min=1e-9)))
    reward = torch.where(n == 0, torch.where(calls == 0, torch.ones_like(calls), cosine), sine)
    return torch.where(has_optimal.expand_as(calls), reward, torch.ones_like(calls))
