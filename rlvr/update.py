"""The policy update: completions -> micro-batches -> log-probs -> loss -> one optimizer step.

Layout: each sequence is its prompt followed by its completion, right-padded to the
longest in its micro-batch. Micro-batches are formed from completions sorted by length, so
little compute goes to padding. The language-model head is applied only at the positions
that predict a completion token, never over the prompt, so the [tokens, vocab] logits exist
only where a loss is taken.
"""

from collections import defaultdict
from dataclasses import dataclass

import torch

from rlvr.algos import AGGREGATIONS, KL_ESTIMATORS, POLICY_LOSSES
from rlvr.errors import TrainingError
from rlvr.types import Completion


@dataclass
class MicroBatch:
    input_ids: torch.Tensor  # [n, L] prompt + completion, right-padded
    attention_mask: torch.Tensor  # [n, L]
    positions: torch.Tensor  # [n, T] column whose logits predict completion token t
    targets: torch.Tensor  # [n, T] completion token ids (0 on padding)
    mask: torch.Tensor  # [n, T] 1.0 where the token is trained on
    old_logprobs: torch.Tensor  # [n, T] old policy's log-probs (the rollout's, or recomputed for TIS)
    rollout_logprobs: torch.Tensor  # [n, T] the rollout engine's log-probs
    advantages: torch.Tensor  # [n, T] advantage of each completion token
    returns: torch.Tensor  # [n, T] value targets (critic only; zeros otherwise)
    old_values: torch.Tensor  # [n, T] critic's values before the update (critic only)
    index: torch.Tensor  # [n] row of each sequence in the step's completion list

    def to(self, device: torch.device) -> "MicroBatch":
        return MicroBatch(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))


def make_micro_batches(
    completions: list[Completion], per_token: dict[str, torch.Tensor], size: int, pad_id: int
) -> list[MicroBatch]:
    """Bucket completions by total length into micro-batches of at most ``size`` sequences.

    ``per_token`` maps "advantages" (required), "returns", "old_values" and "old_logprobs" (the
    trainer's own, for TIS; else the rollout's are the old policy's) to [N, T_max] tensors whose
    row i belongs to ``completions[i]``.
    """
    order = sorted(
        range(len(completions)), key=lambda i: len(completions[i].prompt_ids) + len(completions[i].token_ids)
    )
    return [
        _collate(completions, order[start : start + size], per_token, pad_id) for start in range(0, len(order), size)
    ]


def _collate(completions: list[Completion], index: list[int], per_token: dict[str, torch.Tensor], pad_id: int):
    rows = [completions[i] for i in index]
    n = len(rows)
    width = max(len(c.prompt_ids) + len(c.token_ids) for c in rows)
    steps = max(max(len(c.token_ids) for c in rows), 1)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((n, width), dtype=torch.long)
    positions = torch.zeros((n, steps), dtype=torch.long)
    targets = torch.zeros((n, steps), dtype=torch.long)
    mask = torch.zeros((n, steps))
    logprobs = torch.zeros((n, steps))
    for r, c in enumerate(rows):
        p, t = len(c.prompt_ids), len(c.token_ids)
        input_ids[r, : p + t] = torch.tensor(c.prompt_ids + c.token_ids)
        attention_mask[r, : p + t] = 1
        positions[r, :t] = torch.arange(p - 1, p + t - 1)
        targets[r, :t] = torch.tensor(c.token_ids)
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
        input_ids, attention_mask, positions, targets, mask, old_logprobs, logprobs,
        take("advantages"), take("returns"), take("old_values"), rows_index,
    )  # fmt: skip


def _body_and_head(model):
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder(), base.get_output_embeddings()


def completion_logprobs(
    model, batch: MicroBatch, temperature: float, with_entropy: bool = False, entropy_grad: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs [n, T] of the completion tokens under ``model`` (and entropies [n, T]; with
    ``entropy_grad`` they carry gradients, for an entropy bonus).

    Runs the transformer body over the whole sequence, then the head only at the rows of
    ``positions`` that hold real completion tokens.
    """
    body, head = _body_and_head(model)
    hidden = body(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state  # [n, L, H]
    valid = batch.mask > 0  # [n, T]
    width = batch.positions.shape[1]
    if width == 0 or not valid.any():
        zeros = hidden.sum() * 0.0 + torch.zeros_like(batch.mask)
        return zeros, torch.zeros_like(batch.mask) if with_entropy else None
    picked = hidden.gather(1, batch.positions.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))  # [n, T, H]
    logits = head(picked[valid]).float() / temperature  # [M, V]
    logp_all = torch.log_softmax(logits, dim=-1)
    chosen = logp_all.gather(1, batch.targets[valid].unsqueeze(1)).squeeze(1)  # [M]
    logprobs = torch.zeros(batch.mask.shape, dtype=chosen.dtype, device=chosen.device)
    logprobs = logprobs.masked_scatter(valid, chosen)
    entropy = None
    if with_entropy:
        with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
            token_entropy = -(logp_all.exp() * logp_all).sum(dim=-1)
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
    kl_estimator: str = "k3"
    entropy_coef: float = 0.0
    tis_cap: float | None = None


@torch.no_grad()
def per_row(micro_batches: list[MicroBatch], count: int, width: int, device, fn) -> torch.Tensor:
    """Run ``fn`` (micro-batch -> [n, T]) on each micro-batch without gradient and place the results
    at the batch's rows: [count, width], rows in completion order, 0 on masked positions. The one
    pass for reference KL, critic values and the trainer's own old log-probs."""
    out = torch.zeros(count, width)
    for mb in micro_batches:
        mb = mb.to(device)
        values = (fn(mb) * mb.mask).float().cpu()
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
    for mb in micro_batches:
        mb = mb.to(device)
        logprobs, entropy = completion_logprobs(
            model, mb, settings.temperature, with_entropy=True, entropy_grad=settings.entropy_coef > 0
        )
        per_token, loss_metrics = call_with(
            policy_loss, logprobs, mb.old_logprobs, mb.advantages, mb.mask, **settings.hparams
        )
        tokens = mb.mask.sum().item()
        if settings.tis_cap is not None:
            is_weights, _ = truncated_is_weights(mb.old_logprobs, mb.rollout_logprobs, mb.mask, cap=settings.tis_cap)
            per_token = per_token * is_weights
        if kl_estimator is not None:
            with torch.no_grad():
                ref_logprobs, _ = completion_logprobs(ref_model, mb, settings.temperature)
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
