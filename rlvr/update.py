"""The policy update: completions -> micro-batches -> log-probs -> loss -> one optimizer step.

Layout: each distinct prompt runs through the body once per optimizer step ([G, P], left-padded,
:func:`step_prompts`), however many rows continue it and whichever micro-batches they fall in.
Its KV cache is gathered to the rows and the completions attend to it: the G completions of a
group share one prompt computation (at the default task the chat-templated prompt is over half
of every sequence, so this about halves the update's FLOPs). The completions of a micro-batch
run packed, their real tokens as one sequence, with attention per row
(:mod:`rlvr.hidden`, :mod:`rlvr.attention`); the results land in a right-padded [n, T] grid.
The prompts' outputs enter each micro-batch as detached leaves; their gradients accumulate there
and the prompts' backward runs once after the last micro-batch (:class:`PromptStates`), so the
sum of the gradients is exact. Rows are sorted by completion length before they are cut into
micro-batches, so the attention grid pads little. The language-model head runs only where a
loss is taken, fused and chunked (:mod:`rlvr.head`): no [tokens, vocab] float32 tensor of a
whole micro-batch is ever held for the backward pass.

Why by hand: TRL and verl forward the whole prompt+completion per sequence; sequence packing
(flash-attn varlen) needs CUDA kernels and does not share the prompt. HF's cache API does the
sharing with plain differentiable tensor indexing.
"""

from collections import defaultdict
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from rlvr.algos import AGGREGATIONS, KL_ESTIMATORS, POLICY_LOSSES
from rlvr.attention import through_recompute
from rlvr.errors import TrainingError
from rlvr.head import fusable, head_logprobs
from rlvr.hidden import PromptStates, encode_prompts, predictor_hidden
from rlvr.packed import reorder_once
from rlvr.types import Completion

DEFAULT_LOGPROB_CHUNK = 1024


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

    def to(self, device: torch.device) -> "MicroBatch":
        return MicroBatch(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))


def make_micro_batches(
    completions: list[Completion],
    per_token: dict[str, torch.Tensor],
    size: int,
    pad_id: int,
    share_prompts: bool = True,
    max_tokens: int = 0,
) -> list[MicroBatch]:
    """Micro-batches of at most ``size`` sequences, bucketed by length so little compute goes to padding.

    With ``max_tokens`` > 0 a micro-batch also holds at most that many tokens the body runs for it
    (completion tokens; prompt tokens too without ``share_prompts``), a longer row alone: with
    packed completions (:func:`rlvr.hidden.packed_completion_hidden`) a micro-batch's activation memory and
    time follow its tokens, not its rows, so a token budget lets many short rows share one
    micro-batch (taller matrices) while long ones stay bounded.

    With ``share_prompts`` rows are sorted by completion length alone: the update computes each
    distinct prompt once per optimizer step for all its rows (:func:`step_prompts`), wherever they
    fall, and a micro-batch used on its own computes its distinct prompts once. Without it every
    row carries its own prompt copy and rows are sorted by total length.
    ``per_token`` maps "advantages" (required), "returns", "old_values" and "old_logprobs" (the
    trainer's own, for TIS; else the rollout's are the old policy's) to [N, T_max] tensors whose
    row i belongs to ``completions[i]``.
    """
    if share_prompts:
        order = sorted(range(len(completions)), key=lambda i: len(completions[i].token_ids))
    else:
        order = sorted(
            range(len(completions)), key=lambda i: len(completions[i].prompt_ids) + len(completions[i].token_ids)
        )
    tokens = [len(c.token_ids) + (0 if share_prompts else len(c.prompt_ids)) for c in completions]
    return [
        _collate(completions, rows, per_token, pad_id, share_prompts)
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
    completions: list[Completion], index: list[int], per_token: dict[str, torch.Tensor], pad_id: int, share: bool
):
    rows = [completions[i] for i in index]
    n = len(rows)
    prompts: dict[tuple[int, ...], int] = {}
    prompt_of = []
    for r, c in enumerate(rows):
        key = tuple(c.prompt_ids) if share else (r, *c.prompt_ids)
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
    )  # fmt: skip


def body_and_head(model):
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder(), base.get_output_embeddings()


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


def completion_logprobs(
    model,
    batch: MicroBatch,
    temperature: float,
    with_entropy: bool = False,
    entropy_grad: bool = False,
    chunk: int = DEFAULT_LOGPROB_CHUNK,
    prompts: PromptStates | None = None,
    prompt_of: torch.Tensor | None = None,
    packed: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs [n, T] of the completion tokens under ``model`` (and entropies [n, T]; with
    ``entropy_grad`` they carry gradients, for an entropy bonus); 0 where the mask is 0. The
    prompts are the micro-batch's own, or ``prompts`` computed once per step (see :func:`predictor_hidden`)."""
    body, head = body_and_head(model)
    hidden = predictor_hidden(body, batch, prompts, prompt_of, packed)  # [n, T, H]
    valid = batch.mask > 0  # [n, T]
    if not valid.any():
        zeros = hidden.sum() * 0.0 + torch.zeros_like(batch.mask)
        return zeros, torch.zeros_like(batch.mask) if with_entropy else None
    chosen, token_entropy = head_logprobs(head, hidden[valid], batch.targets[valid], temperature, chunk, entropy_grad)
    logprobs = torch.zeros(batch.mask.shape, dtype=chosen.dtype, device=chosen.device).masked_scatter(valid, chosen)
    entropy = None
    if with_entropy:
        entropy = torch.zeros(batch.mask.shape, dtype=token_entropy.dtype, device=token_entropy.device)
        entropy = entropy.masked_scatter(valid, token_entropy)
    return logprobs, entropy


@dataclass(frozen=True)
class LossSettings:
    policy_loss: str
    aggregation: str
    temperature: float
    hparams: dict  # keyword hyper-parameters by name (clip_low, clip_high, max_tokens, ...)
    kl_coef: float = 0.0  # KL in the loss (0: off)
    logprob_chunk: int = DEFAULT_LOGPROB_CHUNK  # tokens per LM-head chunk (0: all at once)
    kl_estimator: str = "k3"
    entropy_coef: float = 0.0
    tis_cap: float | None = None
    share_prompts: bool = True  # each distinct prompt runs once per optimizer step, for all its rows
    packed: bool = True  # completions run without padding (rlvr.hidden.packed_completion_hidden)


def prompts_of_step(body, micro_batches: list[MicroBatch], device) -> tuple[PromptStates, list[torch.Tensor]]:
    """The step's distinct prompts encoded once by ``body`` (with gradient if enabled), and for
    each micro-batch the index [n] of each row's prompt among them (on ``device``)."""
    prompt_ids, prompt_mask, rows_prompt = step_prompts(micro_batches)
    prompts = encode_prompts(body, prompt_ids.to(device), prompt_mask.to(device))
    return prompts, [index.to(device) for index in rows_prompt]


def trained_prompts_of_step(body, micro_batches: list[MicroBatch], device, share: bool):
    """For a gradient step: (prompts, leaves, index per micro-batch). With ``share`` the prompts
    run forward once (:func:`prompts_of_step`) and the micro-batches read ``leaves``
    (:meth:`PromptStates.detached`); call ``prompts.backward_from(leaves)`` after the last one.
    Without, (None, None, [None, ...]): each micro-batch encodes its own prompts."""
    if not share:
        return None, None, [None] * len(micro_batches)
    prompts, rows_prompt = prompts_of_step(body, micro_batches, device)
    return prompts, prompts.detached(), rows_prompt


@torch.no_grad()
def per_row(micro_batches: list[MicroBatch], count: int, width: int, device, fn, body=None) -> torch.Tensor:
    """Run ``fn(micro_batch, prompts, prompt_of)`` -> [n, T] on each micro-batch without gradient
    and place the results at the batch's rows: [count, width], rows in completion order, 0 on
    masked positions. The one pass for reference KL, critic values and the trainer's own old
    log-probs. With ``body`` (the decoder ``fn`` runs), each distinct prompt of the step is
    encoded once (:func:`prompts_of_step`) and handed to ``fn``; without, ``fn`` gets None, None
    and each micro-batch encodes its own prompts."""
    prompts, rows_prompt = None, [None] * len(micro_batches)
    if body is not None:
        prompts, rows_prompt = prompts_of_step(body, micro_batches, device)
    out = torch.zeros(count, width)
    for mb, prompt_of in zip(micro_batches, rows_prompt, strict=True):
        mb = mb.to(device)
        values = (fn(mb, prompts, prompt_of) * mb.mask).float().cpu()
        out[mb.index.cpu(), : values.shape[1]] = values
    return out


def update_step(
    model,
    ref_model,
    optimizer,
    scheduler,
    micro_batches: list[MicroBatch],
    settings: LossSettings,
    max_grad_norm: float,
    step: int,
) -> dict[str, float]:
    """One optimizer step over ``micro_batches`` (gradient accumulation); returns metrics."""
    from rlvr.algos.losses import truncated_is_weights
    from rlvr.registry import call_with

    policy_loss = POLICY_LOSSES.get(settings.policy_loss)
    aggregate = AGGREGATIONS.get(settings.aggregation)
    kl_estimator = KL_ESTIMATORS.get(settings.kl_estimator) if settings.kl_coef > 0 else None
    batch_tokens = float(sum(mb.mask.sum().item() for mb in micro_batches))
    batch_sequences = sum(mb.mask.shape[0] for mb in micro_batches)
    sums: dict[str, float] = defaultdict(float)
    weights: dict[str, float] = defaultdict(float)

    def record(name: str, value: float, weight: float) -> None:
        sums[name] += value * weight
        weights[name] += weight

    total_loss = 0.0
    device = next(model.parameters()).device
    optimizer.zero_grad(set_to_none=True)
    body, head = body_and_head(model)
    with through_recompute(body):
        # the prompts' forward once; their backward once, after every micro-batch's
        prompts, leaves, rows_prompt = trained_prompts_of_step(body, micro_batches, device, settings.share_prompts)
        ref_prompts = None
        if settings.share_prompts and kl_estimator is not None:
            with torch.no_grad():
                ref_prompts, _ = prompts_of_step(body_and_head(ref_model)[0], micro_batches, device)
        # the fused head's weight is reordered for oneDNN once for all micro-batches (it changes at the optimizer step)
        with reorder_once(head.weight) if fusable(head) else nullcontext():
            for mb, prompt_of in zip(micro_batches, rows_prompt, strict=True):
                mb = mb.to(device)
                logprobs, entropy = completion_logprobs(
                    model,
                    mb,
                    settings.temperature,
                    with_entropy=True,
                    entropy_grad=settings.entropy_coef > 0,
                    chunk=settings.logprob_chunk,
                    prompts=leaves,
                    prompt_of=prompt_of,
                    packed=settings.packed,
                )
                per_token, loss_metrics = call_with(
                    policy_loss, logprobs, mb.old_logprobs, mb.advantages, mb.mask, **settings.hparams
                )
                tokens = mb.mask.sum().item()
                if settings.tis_cap is not None:
                    is_weights, _ = truncated_is_weights(
                        mb.old_logprobs, mb.rollout_logprobs, mb.mask, cap=settings.tis_cap
                    )
                    per_token = per_token * is_weights
                if kl_estimator is not None:
                    with torch.no_grad():
                        ref_logprobs, _ = completion_logprobs(
                            ref_model,
                            mb,
                            settings.temperature,
                            chunk=settings.logprob_chunk,
                            prompts=ref_prompts,
                            prompt_of=prompt_of,
                            packed=settings.packed,
                        )
                    kl, _ = kl_estimator(logprobs, ref_logprobs)
                    per_token = per_token + settings.kl_coef * kl * mb.mask
                    record("kl", (kl.detach() * mb.mask).sum().item() / max(tokens, 1), tokens)
                if settings.entropy_coef > 0:
                    per_token = per_token - settings.entropy_coef * entropy * mb.mask
                loss, _ = call_with(
                    aggregate,
                    per_token,
                    mb.mask,
                    batch_tokens=batch_tokens,
                    batch_sequences=batch_sequences,
                    **settings.hparams,
                )
                if not torch.isfinite(loss):
                    raise TrainingError(f"step {step}: the loss is {loss.item()} (non-finite); no update was applied")
                loss.backward()
                total_loss += loss.item()
                for name, value in loss_metrics.items():
                    record(name, value, tokens)
                record("entropy", (entropy.detach() * mb.mask).sum().item() / max(tokens, 1), tokens)
                mismatch = ((logprobs.detach() - mb.rollout_logprobs).abs() * mb.mask).sum().item() / max(tokens, 1)
                record("logprob_mismatch", mismatch, tokens)
            if prompts is not None:
                prompts.backward_from(leaves)
    params = [p for p in model.parameters() if p.requires_grad]
    grad_norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm).item()
    if not torch.isfinite(torch.tensor(grad_norm)):
        optimizer.zero_grad(set_to_none=True)
        raise TrainingError(f"step {step}: the gradient norm is {grad_norm} (non-finite); no update was applied")
    optimizer.step()
    scheduler.step()
    metrics = {name: sums[name] / weights[name] for name in sums if weights[name] > 0}
    metrics["loss/total"] = total_loss
    metrics["grad_norm"] = grad_norm
    return metrics
