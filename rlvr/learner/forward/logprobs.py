"""The forward passes every learner-side computation shares: the step's distinct prompts once, the
completions on top, the LM head's log-probs only at trained tokens; and :func:`per_row`, the one
no-gradient pass for reference KL, critic values and the trainer's own old log-probs.
"""

import torch

from rlvr.learner.forward.head import head_logprobs
from rlvr.learner.forward.hidden import PromptStates, encode_prompts, predictor_hidden
from rlvr.learner.microbatch import MicroBatch, step_prompts

DEFAULT_LOGPROB_CHUNK = 1024


def body_and_head(model):
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder(), base.get_output_embeddings()


def completion_logprobs(
    model,
    batch: MicroBatch,
    temperature: float,
    with_entropy: bool = False,
    entropy_grad: bool = False,
    chunk: int = DEFAULT_LOGPROB_CHUNK,
    prompts: PromptStates | None = None,
    prompt_of: torch.Tensor | None = None,
    packed_sequences: bool = True,
    fp32_logits: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs [n, T] of the completion tokens under ``model`` (and entropies [n, T]; with
    ``entropy_grad`` they carry gradients, for an entropy bonus); 0 where the mask is 0. The
    prompts are the micro-batch's own, or ``prompts`` computed once per step (see :func:`predictor_hidden`)."""
    body, head = body_and_head(model)
    hidden = predictor_hidden(body, batch, prompts, prompt_of, packed_sequences)  # [n, T, H]
    valid = batch.mask > 0  # [n, T]
    if not valid.any():
        zeros = hidden.sum() * 0.0 + torch.zeros_like(batch.mask)
        return zeros, torch.zeros_like(batch.mask) if with_entropy else None
    chosen, token_entropy = head_logprobs(
        head, hidden[valid], batch.targets[valid], temperature, chunk, entropy_grad, fp32_logits
    )
    logprobs = torch.zeros(batch.mask.shape, dtype=chosen.dtype, device=chosen.device).masked_scatter(valid, chosen)
    entropy = None
    if with_entropy:
        entropy = torch.zeros(batch.mask.shape, dtype=token_entropy.dtype, device=token_entropy.device)
        entropy = entropy.masked_scatter(valid, token_entropy)
    return logprobs, entropy


def prompts_of_step(body, micro_batches: list[MicroBatch], device) -> tuple[PromptStates, list[torch.Tensor]]:
    """The step's distinct prompts encoded once by ``body`` (with gradient if enabled), and for
    each micro-batch the index [n] of each row's prompt among them (on ``device``)."""
    prompt_ids, prompt_mask, rows_prompt = step_prompts(micro_batches)
    prompts = encode_prompts(body, prompt_ids.to(device), prompt_mask.to(device))
    return prompts, [index.to(device) for index in rows_prompt]


def trained_prompts_of_step(body, micro_batches: list[MicroBatch], device, shared_prompt: bool):
    """For a gradient step: (prompts, leaves, index per micro-batch). With ``shared_prompt`` the prompts
    run forward once (:func:`prompts_of_step`) and the micro-batches read ``leaves``
    (:meth:`PromptStates.detached`); call ``prompts.backward_from(leaves)`` after the last one.
    Without, (None, None, [None, ...]): each micro-batch encodes its own prompts."""
    if not shared_prompt:
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
