"""Linear layers on CPU through oneDNN with the weight reordered once, instead of MKL per call.

Why: PyTorch runs a float32 ``nn.Linear`` on CPU through MKL's sgemm, which repacks the weight
matrix on every call. At a decode step's few rows (M <= 64) that repacking, not the arithmetic,
sets the time. oneDNN's inner-product with the weight reordered ahead of time
(``torch.ops.mkldnn._reorder_linear_weight`` / ``_linear_pointwise``, the pair torch.compile's
CPU weight-freezing pass emits) skips it. No maintained library offers this for an eager HF
model, hence this module. Two users: :func:`onednn_linears` swaps each layer's ``forward`` for
the duration of a rollout (``rlvr.rollout.fast``), and the fused LM head (``rlvr.learner.forward.head``) runs its
[tokens, vocab] logits through :func:`reorder_weight` / :func:`onednn_linear` in the update, with
the weight reordered once per optimizer step (:func:`reorder_once`).

The gain depends on the CPU: on the AVX2 machine the repacking set the time of decode steps and
of the head; on an AVX-512 Xeon MKL does not repack at a loss, so the update's head gains nothing
there while decoding layers still do. Measurements: docs/results.md, "Measurements moved from
docstrings".

Numbers: results equal MKL's to float32 rounding (max abs difference ~1e-4 on outputs of size
~20; a different summation order), so a sample can differ from the unpacked run's in a
near-tie, as between any two BLAS builds; the distribution is the same.

bf16 rollouts (``rollout.precision: bf16``) reorder a bf16 copy instead (:func:`reorder_bf16`):
oneDNN then runs AMX or AVX512-BF16 kernels, several times faster than float32 at decode shapes
on a CPU that has them.

Limits: plain ``nn.Linear`` modules with float32 weights on CPU only (a PEFT LoRA layer's base
layer is one, so its frozen weight is packed and the adapter runs as usual); no autograd
through the packed call, so use it under ``torch.no_grad``; the reordered copy costs as much
memory as the weights it copies while the block runs; where the build lacks oneDNN, or the
reorder fails, nothing is swapped.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import torch
from torch import nn

ROWS_HINT = 64  # rows per call oneDNN plans the weight layout for (it accepts any number)


def available() -> bool:
    """oneDNN is built in and exposes the reorder / inner-product pair."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        return bool(torch.ops.mkldnn._reorder_linear_weight and torch.ops.mkldnn._linear_pointwise)
    except (AttributeError, RuntimeError):
        return False


def reorderable(module: nn.Module) -> bool:
    return type(module) is nn.Linear and module.weight.device.type == "cpu" and module.weight.dtype == torch.float32


_HELD: dict[tuple, torch.Tensor] = {}  # reordered copies handed out again within reorder_once blocks


def _held_key(weight: torch.Tensor) -> tuple:
    return weight.data_ptr(), tuple(weight.shape), weight.stride()


def reorder_weight(weight: torch.Tensor) -> torch.Tensor | None:
    """A oneDNN-reordered copy of ``weight`` [out, in] (no gradient) for :func:`onednn_linear`, or
    None where it cannot be made (no oneDNN, not a float32 CPU tensor, a refused reorder). Inside
    :func:`reorder_once` for this weight, the copy made on entry."""
    if weight.device.type != "cpu" or weight.dtype != torch.float32 or not available():
        return None
    held = _HELD.get(_held_key(weight))
    if held is not None:
        return held
    try:
        return _reorder(weight.detach())
    except RuntimeError:
        return None


def _reorder(weight: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._reorder_linear_weight(weight, ROWS_HINT)


def onednn_linear(packed: torch.Tensor, bias: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """x [..., in] -> x W^T + b [..., out] with W from :func:`reorder_weight`; no autograd."""
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


@contextmanager
def reorder_once(weight: torch.Tensor) -> Iterator[bool]:
    """Within the block, :func:`reorder_weight` of ``weight`` hands out one copy reordered on entry
    instead of reordering on every call; yields whether one was made. For a block in which the
    weight does not change: the update's micro-batches, before the optimizer step (the fused LM
    head reorders its [vocab, hidden] weight, ~110 MB at SmolLM2's, once per optimizer step
    instead of once per micro-batch). Why not a cache keyed on the weight's version: fused AdamW
    updates parameters without bumping their version counter, so a stale copy would go unseen."""
    key = _held_key(weight)
    packed = reorder_weight(weight) if key not in _HELD else None
    if packed is None:  # nothing to reorder, or an enclosing block holds it already
        yield key in _HELD
        return
    _HELD[key] = packed
    try:
        yield True
    finally:
        _HELD.pop(key, None)


def reorder_bf16(weight: torch.Tensor) -> torch.Tensor | None:
    """A oneDNN-reordered bf16 copy of a float32 CPU ``weight`` (for :func:`onednn_linear` on bf16
    inputs, AMX / AVX512-BF16 kernels), or None where it cannot be made."""
    if weight.device.type != "cpu" or weight.dtype != torch.float32 or not available():
        return None
    try:
        return _reorder(weight.detach().to(torch.bfloat16))
    except RuntimeError:
        return None


def bf16_linear(packed: torch.Tensor, bias: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """:func:`onednn_linear` in bf16: x cast to bf16, W from :func:`reorder_bf16`, a bf16 result (as autocast gives)."""
    return torch.ops.mkldnn._linear_pointwise(x.to(torch.bfloat16), packed, bias, "none", [], "")


@contextmanager
def onednn_linears(
    model: nn.Module, enabled: bool = True, dtype: torch.dtype = torch.float32, keep_fp32: tuple = ()
) -> Iterator[int]:
    """Within the block, each :func:`reorderable` layer of ``model`` computes with a oneDNN-reordered
    copy of its current weight, in ``dtype`` (float32, or bfloat16 for a bf16 rollout: the copy is
    bf16, inputs are cast to it and results are bf16, as under ``torch.autocast``), except the
    modules in ``keep_fp32`` (float32: the LM head for fp32 logits); yields how many layers were
    swapped. The weights are read on entry: enter again after an optimizer step. Every layer is
    restored on exit."""
    if dtype not in (torch.float32, torch.bfloat16):
        raise ValueError(f"onednn_linears: float32 or bfloat16, not {dtype}")
    swapped: list[nn.Module] = []
    try:
        for module in model.modules() if enabled else []:
            fp32 = dtype == torch.float32 or any(module is kept for kept in keep_fp32)
            reorder, linear = (reorder_weight, onednn_linear) if fp32 else (reorder_bf16, bf16_linear)
            packed = reorder(module.weight) if reorderable(module) else None
            if packed is not None:
                bias = None if module.bias is None else module.bias.detach().to(torch.float32 if fp32 else dtype)
                module.forward = partial(linear, packed, bias)  # shadows the class's forward
                swapped.append(module)
        yield len(swapped)
    finally:
        _restore(swapped)


def _restore(modules: list[nn.Module]) -> None:
    for module in modules:
        module.__dict__.pop("forward", None)
    modules.clear()
