"""Micro-batches: a step's completions collated into padded tensors, bucketed by length and cut by
rows and a token budget. Pure bookkeeping: no model is called here.
"""

from dataclasses import dataclass

import torch

from rlvr.types import Completion


@dataclass
class MicroBatch:
    prompt_ids: torch.Tensor  # [g, P] the distinct prompts, left-padded
    prompt_mask: torch.Tensor  # [g, P] 1 on real prompt tokens
    prompt_of: torch.Tensor  # [n] which prompt row each sequence continues
    targets: torch.Tensor  # [n, T] completion token ids, right-padded (0 on padding)
    token_mask: torch.Tensor  # [n, T] 1 on real completion tokens (tool output included)
    mask: torch.Tensor  # [n, T] 1.0 where the token is trained on (0: padding, tool output)
    old_logprobs: torch.Tensor  # [n, T] old policy's log-probs (the rollout's, or recomputed for TIS)
    rollout_logprobs: torch.Tensor  # [n, T] the rollout engine's log-probs
    advantages: torch.Tensor  # [n, T] advantage of each completion token
    returns: torch.Tensor  # [n, T] value targets (critic only; zeros otherwise)
    old_values: torch.Tensor  # [n, T] critic's values before the update (critic only)
    index: torch.Tensor  # [n] row of each sequence in the step's completion list
    sft: torch.Tensor  # [n, T] 1.0 on demonstration tokens trained with the SFT loss (rlvr.algos.sft)
    off_policy: torch.Tensor  # [n, T] 1.0 on off-policy group members' tokens (LUFFY; rlvr.algos.sft)

    def to(self, device: torch.device) -> "MicroBatch":
        return MicroBatch(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))


def make_micro_batches(
    completions: list[Completion],
    per_token: dict[str, torch.Tensor],
    size: int,
    pad_id: int,
    shared_prompt: bool = True,
    max_tokens: int = 0,
) -> list[MicroBatch]:
    """Micro-batches of at most ``size`` sequences, bucketed by length so little compute goes to padding.

    With ``max_tokens`` > 0 a micro-batch also holds at most that many tokens the body runs for it
    (completion tokens; prompt tokens too without ``shared_prompt``), a longer row alone: with
    packed completions (:func:`rlvr.learner.forward.hidden.packed_completion_hidden`) a micro-batch's
    activation memory and time follow its tokens, not its rows, so a token budget lets many short rows share one
    micro-batch (taller matrices) while long ones stay bounded.

    With ``shared_prompt`` rows are sorted by completion length alone: the update computes each
    distinct prompt once per optimizer step for all its rows (:func:`step_prompts`), wherever they
    fall, and a micro-batch used on its own computes its distinct prompts once. Without it every
    row carries its own prompt copy and rows are sorted by total length.
    ``per_token`` maps "advantages" (required), "returns", "old_values", "old_logprobs" (the
    trainer's own, for TIS; else the rollout's are the old policy's), "sft" and "off_policy" (1.0 on
    the rows of demonstrations: trained by the SFT loss, or as LUFFY's off-policy group members) to
    [N, T_max] tensors whose row i belongs to ``completions[i]``; a missing one is zeros.
    """
    if shared_prompt:
        order = sorted(range(len(completions)), key=lambda i: len(completions[i].token_ids))
    else:
        order = sorted(
            range(len(completions)), key=lambda i: len(completions[i].prompt_ids) + len(completions[i].token_ids)
        )
    tokens = [len(c.token_ids) + (0 if shared_prompt else len(c.prompt_ids)) for c in completions]
    return [
        _collate(completions, rows, per_token, pad_id, shared_prompt)
        for rows in cut_by_budget(order, tokens, size, max_tokens)
    ]


def cut_by_budget(order: list[int], tokens: list[int], size: int, max_tokens: int = 0) -> list[list[int]]:
    """``order`` cut into consecutive runs of at most ``size`` items and, with ``max_tokens`` > 0,
    at most ``max_tokens`` summed ``tokens[i]`` (an item over the budget alone)."""
    runs: list[list[int]] = []
    used = 0
    for i in order:
        if not runs or len(runs[-1]) == size or (max_tokens and used + tokens[i] > max_tokens):
            runs.append([])
            used = 0
        runs[-1].append(i)
        used += tokens[i]
    return runs


def left_padded(prompts: list, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-id sequences as ids [g, P] left-padded with ``pad_id``, and their mask [g, P]."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for k, tokens in enumerate(prompts):
        ids[k, width - len(tokens) :] = torch.tensor(tokens, dtype=torch.long)
        mask[k, width - len(tokens) :] = 1
    return ids, mask


def _collate(
    completions: list[Completion],
    index: list[int],
    per_token: dict[str, torch.Tensor],
    pad_id: int,
    shared_prompt: bool,
):
    rows = [completions[i] for i in index]
    n = len(rows)
    prompts: dict[tuple[int, ...], int] = {}
    prompt_of = []
    for r, c in enumerate(rows):
        key = tuple(c.prompt_ids) if shared_prompt else (r, *c.prompt_ids)
        prompt_of.append(prompts.setdefault(key, len(prompts)))
    distinct = [rows[prompt_of.index(k)].prompt_ids for k in range(len(prompts))]
    prompt_ids, prompt_mask = left_padded(distinct, pad_id)
    steps = max(max(len(c.token_ids) for c in rows), 1)
    targets = torch.full((n, steps), 0, dtype=torch.long)
    token_mask = torch.zeros((n, steps), dtype=torch.long)
    mask = torch.zeros((n, steps))
    logprobs = torch.zeros((n, steps))
    for r, c in enumerate(rows):
        t = len(c.token_ids)
        targets[r, :t] = torch.tensor(c.token_ids, dtype=torch.long)
        token_mask[r, :t] = 1
        mask[r, :t] = torch.tensor(c.loss_mask, dtype=torch.float)
        logprobs[r, :t] = torch.tensor(c.logprobs)
    rows_index = torch.tensor(index, dtype=torch.long)

    def take(name: str) -> torch.Tensor:
        if name not in per_token:
            return torch.zeros((n, steps))
        values = per_token[name][rows_index]
        out = torch.zeros((n, steps))
        out[:, : min(steps, values.shape[1])] = values[:, :steps]
        return out * mask

    old_logprobs = take("old_logprobs") if "old_logprobs" in per_token else logprobs.clone()
    return MicroBatch(
        prompt_ids, prompt_mask, torch.tensor(prompt_of, dtype=torch.long), targets, token_mask, mask,
        old_logprobs, logprobs, take("advantages"), take("returns"), take("old_values"), rows_index,
        take("sft"), take("off_policy"),
    )  # fmt: skip


def step_prompts(micro_batches: list[MicroBatch]) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """The distinct prompts of all ``micro_batches``, once: ids [G, P] and mask [G, P] (left-padded),
    and for each micro-batch the index [n] of each row's prompt among them."""
    table: dict[tuple[int, ...], int] = {}
    local_to_global = []
    for mb in micro_batches:
        keys = [tuple(ids[m > 0].tolist()) for ids, m in zip(mb.prompt_ids, mb.prompt_mask, strict=True)]
        local = torch.tensor([table.setdefault(k, len(table)) for k in keys], dtype=torch.long)
        local_to_global.append(local[mb.prompt_of.cpu()])
    ids, mask = left_padded(list(table), pad_id=0)  # dicts keep insertion order: row g is prompt g
    return ids, mask, local_to_global


def forwarded_tokens(completions: list[Completion], shared_prompt: bool) -> float:
    """Tokens one pass of the update runs through the model: each distinct prompt once when prompts
    are shared (once per optimizer step: exact with one mini-batch, the default), else per row."""
    prompts = {tuple(c.prompt_ids) for c in completions} if shared_prompt else [c.prompt_ids for c in completions]
    return float(sum(len(p) for p in prompts) + sum(len(c.token_ids) for c in completions))
