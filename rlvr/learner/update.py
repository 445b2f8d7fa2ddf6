"""The policy update: completions -> micro-batches -> log-probs -> loss -> one optimizer step.

Layout: each distinct prompt runs through the body once per optimizer step ([G, P], left-padded,
:func:`step_prompts`), however many rows continue it and whichever micro-batches they fall in.
Its KV cache is gathered to the rows and the completions attend to it: the G completions of a
group share one prompt computation (at the default task the chat-templated prompt is over half
of every sequence, so this about halves the update's FLOPs). The completions of a micro-batch
run packed, their real tokens as one sequence, with attention per row
(:mod:`rlvr.learner.forward.hidden`, :mod:`rlvr.learner.forward.attention`); the results land in a
right-padded [n, T] grid.
The prompts' outputs enter each micro-batch as detached leaves; their gradients accumulate there
and the prompts' backward runs once after the last micro-batch (:class:`PromptStates`), so the
sum of the gradients is exact. Rows are sorted by completion length before they are cut into
micro-batches, so the attention grid pads little. The language-model head runs only where a
loss is taken, fused and chunked (:mod:`rlvr.learner.forward.head`): no [tokens, vocab] float32 tensor of a
whole micro-batch is ever held for the backward pass.

Why by hand: TRL and verl forward the whole prompt+completion per sequence; sequence packing
(flash-attn varlen) needs CUDA kernels and does not share the prompt. HF's cache API does the
sharing with plain differentiable tensor indexing.
"""

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import torch

from rlvr.algos import AGGREGATIONS, KL_ESTIMATORS, POLICY_LOSSES
from rlvr.algos.sft import OFF_POLICY_LOSSES, SFT_LOSSES
from rlvr.errors import TrainingError
from rlvr.learner.forward.attention import through_recompute
from rlvr.learner.forward.head import head_weight_once
from rlvr.learner.forward.logprobs import (
    DEFAULT_LOGPROB_CHUNK,
    body_and_head,
    completion_logprobs,
    prompts_of_step,
    trained_prompts_of_step,
)
from rlvr.learner.microbatch import MicroBatch
from rlvr.precision import Precision, autocast, autocast_dtype, no_autocast


@dataclass(frozen=True)
class LossSettings:
    """The loss of one step. ``policy_loss``, ``aggregation`` and ``kl_estimator`` are functions with
    their hyper-parameters bound (:meth:`rlvr.registry.Registry.bind`), or registry names (then
    with the function's own defaults)."""

    policy_loss: Callable | str
    aggregation: Callable | str
    temperature: float
    max_tokens: int  # the generation budget (rollout.max_new_tokens): token_sum_norm's constant normalizer
    kl_coef: float = 0.0  # KL in the loss (0: off)
    logprob_chunk: int = DEFAULT_LOGPROB_CHUNK  # tokens per LM-head chunk (0: all at once)
    kl_estimator: Callable | str = "k3"
    entropy_coef: float = 0.0
    tis_cap: float | None = None
    shared_prompt: bool = True  # each distinct prompt runs once per optimizer step, for all its rows
    packed_sequences: bool = (
        True  # completions run without padding (rlvr.learner.forward.hidden.packed_completion_hidden)
    )
    precision: Precision = "fp32"  # bf16: forward passes under autocast, fp32 master weights (rlvr.precision)
    fp32_logits: bool = False  # under bf16: the LM head's forward logits from the fp32 weight (train.fp32_logits)
    sft_loss: Callable | str = "nll"  # on demonstration rows (MicroBatch.sft; rlvr.algos.sft.SFT_LOSSES)
    sft_coef: float = 1.0  # the SFT loss's weight beside the RL loss (its token mean over the step's demonstrations)
    rl_coef: float = 1.0  # the RL loss's weight (CHORD's convex mix: 1 - sft_coef)
    off_policy_loss: Callable | str = "luffy"  # on off-policy group members (MicroBatch.off_policy; LUFFY)


def join_layer_pass(body, device) -> None:
    """FSDP2: a forward and backward through every layer on one token, weighted zero, so this rank issues the
    layer collectives that the other ranks issue for the same micro-batch."""
    out = body(input_ids=torch.zeros(1, 1, dtype=torch.long, device=device), use_cache=False).last_hidden_state
    with no_autocast(device):
        (out.float().sum() * 0.0).backward()


def bound(registry, part: "Callable | str") -> Callable:
    """A loss part: already bound, or looked up by name with the function's own defaults."""
    return registry.bind(part) if isinstance(part, str) else part


def update_step(
    model,
    ref_model,
    optimizer,
    scheduler,
    micro_batches: list[MicroBatch],
    settings: LossSettings,
    max_grad_norm: float,
    step: int,
    step_scheduler: bool = True,
    sync=None,
    padding: list[MicroBatch] = (),
) -> dict[str, float]:
    """One optimizer step over ``micro_batches`` (gradient accumulation); returns metrics.
    ``step_scheduler=False``: an extra update the learning-rate schedule does not count (ReLIFT's).
    ``sync`` (a :class:`rlvr.distributed.groups.GradientSync`): this rank's share of the step's rows; the
    normalizers, gradients and metrics are summed over the ranks, so every rank takes the optimizer step
    one process would take over all the rows (a rank may hold no rows). Under FSDP2 every rank runs as many
    micro-batches (:meth:`~rlvr.distributed.groups.GradientSync.padding`): the extra ones, and ``padding``
    (other ranks' rows sent to a rank that has none), run forward and backward weighted zero."""
    from rlvr.algos.losses import truncated_is_weights

    policy_loss = bound(POLICY_LOSSES, settings.policy_loss)
    aggregate = bound(AGGREGATIONS, settings.aggregation)
    kl_estimator = bound(KL_ESTIMATORS, settings.kl_estimator) if settings.kl_coef > 0 else None
    sft_loss = bound(SFT_LOSSES, settings.sft_loss)
    off_policy_loss = bound(OFF_POLICY_LOSSES, settings.off_policy_loss)
    # the RL loss's normalizers count RL rows only; demonstration rows trained by the SFT loss have their own
    batch_tokens = float(sum((mb.mask * (1 - mb.sft)).sum().item() for mb in micro_batches))
    batch_sequences = sum(int((mb.sft.sum(dim=1) == 0).sum().item()) for mb in micro_batches)
    sft_tokens = float(sum((mb.mask * mb.sft).sum().item() for mb in micro_batches))
    if sync is not None:
        batch_tokens, batch_sequences, sft_tokens = sync.totals(batch_tokens, batch_sequences, sft_tokens)
    counted = len(micro_batches)
    if sync is not None:  # FSDP2: as many layer passes (collectives) as every other rank
        micro_batches = [*micro_batches, *sync.padding(counted, micro_batches[:1] or list(padding))]  # the shortest
    sums: dict[str, float] = defaultdict(float)
    weights: dict[str, float] = defaultdict(float)
    live = True  # False on padding micro-batches: they count nowhere

    def record(name: str, value: float, weight: float) -> None:
        if live:
            sums[name] += value * weight
            weights[name] += weight

    total_loss = 0.0
    device = next(model.parameters()).device
    optimizer.zero_grad(set_to_none=True)
    body, head = body_and_head(model)
    # one autocast block for the whole step: each weight is cast to bf16 once, for every micro-batch;
    # the backward passes run outside it (no_autocast), in the dtypes the forward chose
    sharded = sync is not None and sync.sharded  # FSDP2: a weight's bf16 copy lives as long as its pass
    with autocast(device, settings.precision, cache_weights=not sharded), through_recompute(body):
        # the prompts' forward once; their backward once, after every micro-batch's
        if micro_batches:
            prompts, leaves, rows_prompt = trained_prompts_of_step(body, micro_batches, device, settings.shared_prompt)
        else:  # a learner rank with no rows this step: it still joins the step's collectives
            prompts, leaves, rows_prompt = None, None, []
        ref_prompts = None
        if settings.shared_prompt and kl_estimator is not None and micro_batches:
            with torch.no_grad():
                ref_prompts, _ = prompts_of_step(body_and_head(ref_model)[0], micro_batches, device)
        # the fused head's weight is reordered for oneDNN once for all micro-batches (it changes at the optimizer step)
        with head_weight_once(head, autocast_dtype(device), settings.fp32_logits):
            for index, (mb, prompt_of) in enumerate(zip(micro_batches, rows_prompt, strict=True)):
                live = index < counted
                mb = mb.to(device)
                rl_mask = mb.mask * (1 - mb.sft)  # [n, T] tokens of the RL loss (on- and off-policy rows)
                has_rl = bool(rl_mask.any())  # a micro-batch of demonstrations alone skips the RL-only passes
                logprobs, entropy = completion_logprobs(
                    model,
                    mb,
                    settings.temperature,
                    with_entropy=True,
                    entropy_grad=settings.entropy_coef > 0 and has_rl,
                    chunk=settings.logprob_chunk,
                    prompts=leaves,
                    prompt_of=prompt_of,
                    packed_sequences=settings.packed_sequences,
                    fp32_logits=settings.fp32_logits,
                )
                on_policy = rl_mask * (1 - mb.off_policy)  # [n, T] tokens the policy sampled
                per_token, loss_metrics = policy_loss(logprobs, mb.old_logprobs, mb.advantages, on_policy)
                tokens = on_policy.sum().item()
                if settings.tis_cap is not None:
                    is_weights, _ = truncated_is_weights(
                        mb.old_logprobs, mb.rollout_logprobs, on_policy, cap=settings.tis_cap
                    )
                    per_token = per_token * is_weights
                if mb.off_policy.any():  # LUFFY: demonstrations in the group, shaped and unclipped
                    off_mask = rl_mask * mb.off_policy
                    off_token, off_metrics = off_policy_loss(logprobs, mb.advantages, off_mask)
                    per_token = torch.where(off_mask > 0, off_token, per_token)
                    for name, value in off_metrics.items():
                        record(name, value, off_mask.sum().item())
                if kl_estimator is not None and has_rl:
                    with torch.no_grad():
                        ref_logprobs, _ = completion_logprobs(
                            ref_model,
                            mb,
                            settings.temperature,
                            chunk=settings.logprob_chunk,
                            prompts=ref_prompts,
                            prompt_of=prompt_of,
                            packed_sequences=settings.packed_sequences,
                            fp32_logits=settings.fp32_logits,
                        )
                    kl, _ = kl_estimator(logprobs, ref_logprobs)
                    per_token = per_token + settings.kl_coef * kl * rl_mask
                    record("kl", (kl.detach() * on_policy).sum().item() / max(tokens, 1), tokens)
                if settings.entropy_coef > 0 and has_rl:
                    per_token = per_token - settings.entropy_coef * entropy * rl_mask
                loss, _ = aggregate(
                    per_token,
                    rl_mask,
                    batch_tokens=batch_tokens,
                    batch_sequences=batch_sequences,
                    max_tokens=settings.max_tokens,
                )
                loss = settings.rl_coef * loss
                if sft_tokens:  # demonstrations: the SFT loss's token mean over the step, weighted
                    sft_mask = mb.mask * mb.sft
                    sft_token, sft_metrics = sft_loss(logprobs, sft_mask)
                    loss = loss + settings.sft_coef * sft_token.sum() / sft_tokens
                    demo_tokens = sft_mask.sum().item()
                    record("sft/nll", -(logprobs.detach() * sft_mask).sum().item() / max(demo_tokens, 1), demo_tokens)
                    for name, value in sft_metrics.items():
                        record(name, value, demo_tokens)
                if not torch.isfinite(loss) and sync is None:  # ranks: the summed gradient norm stops all of them
                    raise TrainingError(f"step {step}: the loss is {loss.item()} (non-finite); no update was applied")
                if not live:
                    loss = loss * 0.0  # the layers' collectives run; the gradient does not change
                with no_autocast(device):
                    loss.backward()
                if sharded and mb.targets.shape[1] == 1:  # one-token rows never reach the layers: join their pass
                    join_layer_pass(body, device)
                total_loss += loss.item() if live else 0.0
                for name, value in loss_metrics.items():
                    record(name, value, tokens)
                record("entropy", (entropy.detach() * on_policy).sum().item() / max(tokens, 1), tokens)
                mismatch = ((logprobs.detach() - mb.rollout_logprobs).abs() * on_policy).sum().item() / max(tokens, 1)
                record("logprob_mismatch", mismatch, tokens)
            if prompts is not None:
                with no_autocast(device):
                    prompts.backward_from(leaves)
    params = [p for p in model.parameters() if p.requires_grad]
    if sync is not None:
        sync.gradients(params)
        (total_loss,) = sync.totals(total_loss)
        sync.metrics(sums, weights)
        grad_norm = sync.clip_grad_norm(params, max_grad_norm)
    else:
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm).item()
    if not torch.isfinite(torch.tensor(grad_norm)):
        optimizer.zero_grad(set_to_none=True)
        raise TrainingError(f"step {step}: the gradient norm is {grad_norm} (non-finite); no update was applied")
    optimizer.step()
    if step_scheduler:
        scheduler.step()
    metrics = {name: sums[name] / weights[name] for name in sums if weights[name] > 0}
    metrics["loss/total"] = total_loss
    metrics["grad_norm"] = grad_norm
    return metrics
