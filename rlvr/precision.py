"""Mixed precision: fp32 master weights and optimizer state, bf16 compute where the hardware has it.

Two settings, resolved once per run (:func:`resolve_precision`):

- ``train.precision: auto | fp32 | bf16``: the learner's forward passes run under
  ``torch.autocast(dtype=bfloat16)`` (CPU and CUDA): matrix multiplies and attention in bf16,
  norms, softmaxes and the residual stream in fp32 as autocast places them; the parameters,
  their gradients and AdamW's state stay fp32 (the master copy). The LM head's fused log-probs
  and entropies (:mod:`rlvr.learner.forward.head`) take their logits from the fp32 weight
  (``train.fp32_logits``, default on; off: a bf16 GEMM, its result rounded to bf16), run the
  backward's GEMMs in bf16 and every reduction and the closed-form gradient in fp32. ``auto`` is
  bf16 where the device multiplies bf16 in hardware
  (:func:`bf16_matrix_units`: a CPU with AMX-BF16 or AVX512-BF16, a CUDA device with bf16), fp32
  elsewhere, so a CPU without bf16 units runs exactly as before (bf16 there is emulated: correct
  but slower than fp32).
- ``rollout.precision: train | fp32 | bf16``: the rollout engine's compute, by default the
  learner's (the fast engine on CPU: bf16 oneDNN linears, :mod:`rlvr.cpu.onednn`; elsewhere
  autocast), the LM head in fp32 with ``train.fp32_logits``. A bf16 rollout samples from a
  slightly different distribution than the learner computes; ``train/logprob_mismatch`` shows by
  how much and ``algo.tis_cap`` corrects for it (docs/precision.md).

Why autocast rather than a bf16 copy of the model: it is the field's standard (TRL's
``bf16=True``, Accelerate, verl's FSDP mixed precision) and keeps one set of weights; within one
autocast block the bf16 casts of the weights are made once and reused (the update's
micro-batches share one block).

Pure bf16 storage (``model.dtype: bfloat16``) is still possible and costs accuracy: an AdamW
step smaller than about 1/256 of a weight rounds away in bf16 (at the default lr of 2e-5 that
is most of them), so the model learns slowly or not at all; docs/results.md has the numbers.

Limits: fp16 is not offered (it needs loss scaling); the critic trains in fp32; on MPS autocast
follows torch's own support.
"""

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from functools import cache
from pathlib import Path
from typing import Literal

import torch

Precision = Literal["fp32", "bf16"]


@cache
def cpu_bf16_flags() -> tuple[str, ...]:
    """The CPU's bf16 matrix-unit flags (``amx_bf16``, ``avx512_bf16``) from /proc/cpuinfo; () where unknown."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ()
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return tuple(f for f in ("amx_bf16", "avx512_bf16") if f in flags)


def bf16_matrix_units(device: torch.device) -> bool:
    """Whether ``device`` multiplies bf16 matrices in hardware (so bf16 compute is faster than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return bool(cpu_bf16_flags())
    return False


def resolve_precision(setting: str, device: torch.device, train: Precision | None = None) -> Precision:
    """``auto`` -> bf16 where :func:`bf16_matrix_units`, else fp32; ``train`` -> the learner's (``train``)."""
    if setting == "train":
        if train is None:
            raise ValueError("precision 'train' needs the learner's resolved precision")
        return train
    if setting == "auto":
        return "bf16" if bf16_matrix_units(device) else "fp32"
    if setting not in ("fp32", "bf16"):
        raise ValueError(f"unknown precision {setting!r} (fp32 | bf16 | auto)")
    return setting  # type: ignore[return-value]


def compute_dtype(precision: Precision) -> torch.dtype:
    return torch.bfloat16 if precision == "bf16" else torch.float32


def autocast(device: torch.device | str, precision: Precision, cache_weights: bool = True):
    """A block whose forward passes compute in ``precision``: ``torch.autocast`` for bf16, nothing for fp32.
    ``cache_weights=False`` casts a weight at every use: FSDP2's layers gather their weights again for
    every pass, so autocast's cache (kept until the block ends) would hold one bf16 copy per pass."""
    device_type = torch.device(device).type
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device_type, dtype=compute_dtype(precision), cache_enabled=cache_weights)


def no_autocast(device: torch.device | str):
    """A block inside an autocast one where ops run in their inputs' dtypes (a backward pass,
    code that casts for itself); the enclosing block's cached weight casts survive it."""
    return torch.autocast(torch.device(device).type, enabled=False)


def autocast_dtype(device: torch.device | str) -> torch.dtype | None:
    """The dtype autocast computes matrix multiplies in here and now on ``device``, or None when it is off."""
    device_type = torch.device(device).type
    if not torch.is_autocast_enabled(device_type):
        return None
    return torch.get_autocast_dtype(device_type)


@contextmanager
def fp32_linear(layer) -> Iterator[None]:
    """Within the block ``layer`` (an ``nn.Linear``) computes in its weight's dtype even under
    autocast, its input cast to it; a layer whose forward is swapped already (rlvr.cpu.onednn)
    keeps that one."""
    if not isinstance(layer, torch.nn.Linear) or "forward" in layer.__dict__:
        yield
        return
    plain = layer.forward

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return plain(x.to(layer.weight.dtype))

    layer.forward = forward
    try:
        yield
    finally:
        layer.__dict__.pop("forward", None)


def fp32_head(model, enabled: bool = True):
    """Within the block the model's LM head computes in fp32 even under autocast, so the logits,
    and the log-probs and samples drawn from them, carry no bf16 rounding (``train.fp32_logits``).
    MiniMax-M1 (2025) traced most of its training/inference probability mismatch to the head's precision."""
    head = model.get_output_embeddings() if enabled and hasattr(model, "get_output_embeddings") else None
    return fp32_linear(head) if head is not None else nullcontext()
