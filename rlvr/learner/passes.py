"""The learner's no-gradient passes before a step's updates: per-token KL to the reference model
(for KL in the reward) and the trainer's own log-probs of the sampled tokens (for truncated
importance sampling against the rollout engine's)."""

import torch

from rlvr.algos.losses import truncated_is_weights
from rlvr.learner.forward.logprobs import body_and_head, completion_logprobs, per_row
from rlvr.learner.microbatch import MicroBatch
from rlvr.precision import Precision, autocast


def token_width(completions) -> int:
    return max((len(c.token_ids) for c in completions), default=1) or 1


def reference_kl(
    ref_model,
    micro_batches: list[MicroBatch],
    count: int,
    width: int,
    estimator,
    temperature: float,
    shared_prompt: bool = True,
    packed_sequences: bool = True,
    precision: Precision = "fp32",
    fp32_logits: bool = False,
):
    """Per-token KL(rollout policy || reference) [count, width], rows in completion order; with
    ``shared_prompt`` each distinct prompt runs once through the reference model; ``packed_sequences``
    as in :func:`rlvr.learner.forward.hidden.completion_hidden`. ``estimator`` is a bound KL estimator."""

    def kl(mb: MicroBatch, prompts, prompt_of) -> torch.Tensor:
        ref_logprobs, _ = completion_logprobs(
            ref_model,
            mb,
            temperature,
            prompts=prompts,
            prompt_of=prompt_of,
            packed_sequences=packed_sequences,
            fp32_logits=fp32_logits,
        )
        return estimator(mb.rollout_logprobs, ref_logprobs)[0]

    body = body_and_head(ref_model)[0] if shared_prompt else None
    device = next(ref_model.parameters()).device
    with autocast(device, precision):
        return per_row(micro_batches, count, width, device, kl, body=body)


def trainer_old_logprobs(
    model, micro, count: int, width: int, *, temperature: float, chunk: int, shared_prompt: bool,
    packed_sequences: bool, cap: float, precision: Precision = "fp32", fp32_logits: bool = False,
) -> tuple[torch.Tensor, dict[str, float]]:  # fmt: skip
    """For truncated importance sampling: the trainer's log-probs [count, width] before this step's
    updates become the old policy's; each token is then weighted by min(pi_trainer / pi_rollout, cap)."""

    def logprobs(mb, prompts, prompt_of) -> torch.Tensor:
        return completion_logprobs(
            model, mb, temperature, chunk=chunk, prompts=prompts, prompt_of=prompt_of,
            packed_sequences=packed_sequences, fp32_logits=fp32_logits,
        )[0]  # fmt: skip

    body = body_and_head(model)[0] if shared_prompt else None
    device = next(model.parameters()).device
    with autocast(device, precision):  # the same compute as the update's, so an unchanged policy gives ratio 1
        old = per_row(micro, count, width, device, logprobs, body=body)
    rollout = per_row(micro, count, width, torch.device("cpu"), lambda mb, *_: mb.rollout_logprobs)
    mask = per_row(micro, count, width, torch.device("cpu"), lambda mb, *_: mb.mask * (1 - mb.off_policy))  # sampled
    _, metrics = truncated_is_weights(old, rollout, mask, cap=cap)
    return old, metrics
