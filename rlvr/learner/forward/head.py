"""Token log-probs and entropies through the language-model head, fused and chunked.

The update needs, at each trained token, log pi(y_t) = z_y - logsumexp(z) and the entropy
H = logsumexp(z) - sum_j p_j z_j of the next-token distribution, where z = W h / temperature.
Autograd over ``log_softmax(head(h))`` keeps a [tokens, vocab] float32 tensor per step of the
chain (logits, log-softmax, its exp) for the backward pass, and its backward walks them again
(division by the temperature, gather's scatter, log-softmax's backward): at a 49k vocabulary
that is most of the update's non-matmul time and its peak memory.

:class:`FusedLogprobHead` keeps only the hidden states and two numbers per token (logsumexp and
entropy). Its backward recomputes each chunk's logits and applies the closed-form gradient

    d log p_y / dz = onehot(y) - p          d H / dz = -p * (log p + H)

so a chunk costs one matmul forward and three in the backward (the recompute, dh, dW), with about
four elementwise passes over [chunk, vocab]; peak memory is O(chunk x vocab). Why by hand: the
fused linear-cross-entropy kernels that do this (Liger, Apple's cut-cross-entropy) are Triton/CUDA
only and compute a loss, not per-token log-probs and entropies with their own upstream gradients.

On CPU in float32 the logits (forward and recompute) run through oneDNN on a weight reordered
once per call, or once per optimizer step inside ``rlvr.cpu.onednn.reorder_once`` (the update):
MKL's sgemm repacks the [vocab, hidden] weight on every call, which at a few hundred rows sets
the time on some CPUs (measurements: docs/results.md, "oneDNN linears"). ``rlvr.cpu`` is imported
only when the weight is on the CPU.

Under bf16 mixed precision (``train.precision: bf16``, :mod:`rlvr.precision`) the forward's logits
come from the fp32 weight (``train.fp32_logits``, the default; off: a bf16 GEMM, its result rounded
to bf16), and the backward's three GEMMs (recompute, dh, dW) run in bf16 on a bf16 copy of the
weight made once per optimizer step (:func:`head_weight_once`); everything after a GEMM
(logsumexp, entropy, the gradient of the logits) is fp32, and the weight's gradient is summed
over chunks in fp32.

Limits: a plain ``nn.Linear`` head without bias (Llama, Qwen, SmolLM2, GPT-NeoX heads); a head
with a bias or wrapped by an adapter falls back to :func:`checkpointed_logprobs`, the autograd
version under activation checkpointing (same numbers, more memory traffic).
"""

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from rlvr.precision import autocast_dtype, fp32_linear


def reorder_weight(weight: torch.Tensor):
    """The oneDNN-reordered copy of a CPU float32 weight (``rlvr.cpu.onednn``), else None."""
    if weight.device.type != "cpu":
        return None
    from rlvr.cpu.onednn import reorder_weight as reorder

    return reorder(weight)


_CAST: dict[tuple, torch.Tensor] = {}  # weight copies in a compute dtype, held by head_weight_once blocks


def _cast_key(weight: torch.Tensor, dtype: torch.dtype) -> tuple:
    return weight.data_ptr(), tuple(weight.shape), dtype


def compute_weight(weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``weight`` in the GEMMs' dtype (no gradient): held by a :func:`head_weight_once` block, else cast now."""
    if dtype == weight.dtype:
        return weight.detach()
    held = _CAST.get(_cast_key(weight, dtype))
    return held if held is not None else weight.detach().to(dtype)


def onednn_linear(packed, bias, hidden: torch.Tensor) -> torch.Tensor:
    from rlvr.cpu.onednn import onednn_linear as linear

    return linear(packed, bias, hidden)


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half-precision models, the model's own dtype from float32 up."""
    return torch.promote_types(dtype, torch.float32)


def _chunk_logits(hidden: torch.Tensor, weight: torch.Tensor, temperature: float, packed=None) -> torch.Tensor:
    """z = W h / T [c, V] in the accumulation dtype; the GEMM in ``weight``'s dtype (``hidden`` is
    cast to it), through ``packed`` (oneDNN, ``rlvr.cpu.onednn``) when given."""
    hidden = hidden.to(weight.dtype)
    logits = hidden @ weight.t() if packed is None else onednn_linear(packed, None, hidden)
    logits = logits.to(_accumulation_dtype(weight.dtype))  # [c, V]
    return logits.div_(temperature) if temperature != 1.0 else logits


def _chunk_forward(hidden, weight, targets, temperature: float, packed=None):
    """(chosen log-prob [c], logsumexp [c], entropy [c]) of one chunk, with two [c, V] buffers."""
    logits = _chunk_logits(hidden, weight, temperature, packed)  # [c, V]
    top = logits.amax(dim=1, keepdim=True)  # [c, 1]
    probs = torch.sub(logits, top).exp_()  # [c, V], unnormalized
    total = probs.sum(dim=1, keepdim=True)  # [c, 1]
    lse = (top + total.log()).squeeze(1)  # [c]
    probs.div_(total)
    expected_logit = torch.bmm(probs.unsqueeze(1), logits.unsqueeze(2)).view(-1)  # [c]: sum_j p_j z_j
    chosen = logits.gather(1, targets.unsqueeze(1)).squeeze(1) - lse
    return chosen, lse, lse - expected_logit


class FusedLogprobHead(torch.autograd.Function):
    """(hidden [M, H], weight [V, H], targets [M]) -> (log-prob of each target [M], entropy [M]),
    in chunks of ``chunk`` rows; differentiable in hidden and weight (see the module docstring).
    ``dtype``: the GEMMs' dtype (the weight's own, or bf16 under mixed precision); log-probs,
    entropies and gradients keep the input dtypes."""

    @staticmethod
    def forward(
        ctx, hidden, weight, targets, temperature: float, chunk: int, entropy_grad: bool, dtype=None,
        fp32_logits: bool = False,
    ):  # fmt: skip
        chosen, lse, entropy = [], [], []
        gemm_weight = compute_weight(weight, dtype or weight.dtype)  # the backward's GEMMs
        forward_weight = weight.detach() if fp32_logits else gemm_weight  # fp32_logits: the master weight's
        packed = reorder_weight(forward_weight)  # the forward and (when the same weight) the backward's recompute
        with torch.no_grad(), torch.autocast(hidden.device.type, enabled=False):
            for start in range(0, hidden.shape[0], chunk):
                c, s, e = _chunk_forward(
                    hidden[start : start + chunk], forward_weight, targets[start : start + chunk], temperature, packed
                )
                chosen.append(c)
                lse.append(s)
                entropy.append(e)
        chosen, lse, entropy = torch.cat(chosen), torch.cat(lse), torch.cat(entropy)
        ctx.save_for_backward(hidden, weight, targets, lse, entropy)
        ctx.temperature, ctx.chunk, ctx.entropy_grad, ctx.packed = temperature, chunk, entropy_grad, packed
        ctx.gemm_weight = gemm_weight
        if forward_weight is not gemm_weight:
            ctx.packed = None  # the recompute runs in the backward's dtype
        if not entropy_grad:
            ctx.mark_non_differentiable(entropy)
        return chosen, entropy

    @staticmethod
    def backward(ctx, grad_chosen, grad_entropy):
        hidden, weight, targets, lse, entropy = ctx.saved_tensors
        temperature, chunk, gemm_weight = ctx.temperature, ctx.chunk, ctx.gemm_weight
        mixed = gemm_weight.dtype != weight.dtype  # bf16 GEMMs for an fp32 master weight
        use_entropy = ctx.entropy_grad and grad_entropy is not None
        grad_hidden = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        grad_weight = (
            torch.zeros(weight.shape, dtype=_accumulation_dtype(weight.dtype), device=weight.device)
            if ctx.needs_input_grad[1]
            else None
        )
        if grad_chosen is None:
            grad_chosen = torch.zeros_like(lse)
        for start in range(0, hidden.shape[0], chunk):
            rows = slice(start, start + chunk)
            h = hidden[rows]
            logp = _chunk_logits(h, gemm_weight, temperature, ctx.packed).sub_(lse[rows].unsqueeze(1))  # [c, V]
            probs = logp.exp()  # [c, V]
            g = grad_chosen[rows].unsqueeze(1).to(probs.dtype)  # [c, 1]
            if use_entropy:  # d H / dz = -p (log p + H)
                logp.add_(entropy[rows].unsqueeze(1)).mul_(probs).mul_(-grad_entropy[rows].unsqueeze(1))
                grad_logits = probs.mul_(-g).add_(logp)
            else:
                grad_logits = probs.mul_(-g)
            grad_logits.scatter_add_(1, targets[rows].unsqueeze(1), g)  # + onehot(y) * g
            if temperature != 1.0:
                grad_logits.div_(temperature)
            grad_logits = grad_logits.to(gemm_weight.dtype)
            if grad_hidden is not None:
                grad_hidden[rows] = grad_logits @ gemm_weight
            if grad_weight is None:
                continue
            if mixed:  # a bf16 GEMM per chunk, the sum over chunks in fp32
                grad_weight.add_(grad_logits.t() @ h.to(gemm_weight.dtype))
            else:  # accumulated in fp32 for a bf16/fp16 weight (grad_weight is in the accumulation dtype)
                grad_weight.addmm_(grad_logits.t().to(grad_weight.dtype), h.to(grad_weight.dtype))
        if grad_weight is not None:
            grad_weight = grad_weight.to(weight.dtype)
        ctx.packed = ctx.gemm_weight = None
        return grad_hidden, grad_weight, None, None, None, None, None, None


def fusable(head: nn.Module) -> bool:
    """Whether :class:`FusedLogprobHead` computes this head: a plain bias-free ``nn.Linear``."""
    return type(head) is nn.Linear and head.bias is None


def head_weight_once(head: nn.Module, dtype: torch.dtype | None = None, fp32_logits: bool = True):
    """A context in which a fused head's weight is prepared once for all the micro-batches of an
    update (it changes only at the optimizer step): cast to ``dtype`` under mixed precision
    (:func:`compute_weight`), and on CPU the float32 weight reordered for oneDNN where a float32
    GEMM reads it (an fp32 run, or ``fp32_logits`` under mixed precision)."""
    if not fusable(head):
        return nullcontext()
    stack = ExitStack()
    mixed = dtype is not None and dtype != head.weight.dtype
    if mixed:
        stack.enter_context(_cast_once(head.weight, dtype))
    if head.weight.device.type == "cpu" and (fp32_logits or not mixed):  # the weight an fp32 forward reads
        from rlvr.cpu.onednn import reorder_once

        stack.enter_context(reorder_once(head.weight))
    return stack


@contextmanager
def _cast_once(weight: torch.Tensor, dtype: torch.dtype) -> Iterator[None]:
    key = _cast_key(weight, dtype)
    if key in _CAST:  # an enclosing block holds it
        yield
        return
    _CAST[key] = weight.detach().to(dtype)
    try:
        yield
    finally:
        _CAST.pop(key, None)


def _autograd_chunk(head, hidden, targets, temperature: float, entropy_grad: bool):
    logits = head(hidden)
    logp_all = torch.log_softmax(logits.to(_accumulation_dtype(logits.dtype)) / temperature, dim=-1)  # [c, V]
    chosen = logp_all.gather(1, targets.unsqueeze(1)).squeeze(1)
    with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
        entropy = -(logp_all.exp() * logp_all).sum(dim=-1)
    return chosen, entropy


def checkpointed_logprobs(head, hidden, targets, temperature: float, chunk: int, entropy_grad: bool = False):
    """Autograd version for any head: each chunk under activation checkpointing (only its hidden
    states are kept; its [chunk, V] logits are recomputed in the backward pass); ``chunk`` 0 runs
    one plain chunk (the whole [M, V] log-softmax is kept: the memory-hungry baseline)."""
    size = chunk or max(hidden.shape[0], 1)
    chosen, entropy = [], []
    for start in range(0, hidden.shape[0], size):
        args = (head, hidden[start : start + size], targets[start : start + size], temperature, entropy_grad)
        if torch.is_grad_enabled() and chunk:
            c, e = checkpoint(_autograd_chunk, *args, use_reentrant=False)
        else:
            c, e = _autograd_chunk(*args)
        chosen.append(c)
        entropy.append(e)
    return torch.cat(chosen), torch.cat(entropy)


def head_logprobs(
    head, hidden, targets, temperature: float, chunk: int, entropy_grad: bool = False, fp32_logits: bool = False
):
    """Log-prob [M] of each target and the entropy [M] of each next-token distribution, from hidden
    states [M, H]. Fused (:class:`FusedLogprobHead`) when the head allows and ``chunk`` > 0; the
    entropy carries gradient only with ``entropy_grad`` (an entropy bonus in the loss). Under bf16
    autocast the head's GEMMs are bf16; with ``fp32_logits`` the forward's logits (so the log-probs
    and entropies) are computed from the fp32 weight (``train.fp32_logits``, :mod:`rlvr.precision`)."""
    dtype = autocast_dtype(hidden.device)  # bf16 under mixed precision (rlvr.precision), else None
    if chunk and fusable(head):
        return FusedLogprobHead.apply(
            hidden, head.weight, targets, float(temperature), chunk, entropy_grad, dtype, fp32_logits
        )
    if fp32_logits and dtype is not None:
        with fp32_linear(head):
            return checkpointed_logprobs(head, hidden, targets, temperature, chunk, entropy_grad)
    return checkpointed_logprobs(head, hidden, targets, temperature, chunk, entropy_grad)
