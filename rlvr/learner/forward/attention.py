"""The update's attention: packed completions attending per row, and grouped-query attention
without copied key/value heads.

**Packed completions** (:class:`RowLayout`, :func:`rows_attention`, :func:`row_attention`;
``train.packed_sequences``, on by default). The completions of a micro-batch run through the body
as one sequence of their real tokens [1, N], so the linear layers, norms and MLPs (nearly all
the FLOPs) compute no padding and get one tall matrix instead of n short ones. Only attention
needs the rows apart: :func:`rows_attention`, registered with transformers' own extension point
(``AttentionInterface``), scatters queries, keys and values to the padded [n, T] grid, puts each
row's prompt keys/values in front, and runs SDPA with the same mask the padded pass uses; its
output goes back to the packed order. Why not transformers' own packing (``position_ids`` that
restart, flash-attention varlen): it needs CUDA kernels, and it cannot attend to a prompt's
KV cache shared by the rows. Why not one packed sequence with a block-diagonal mask: dense
attention over all N x N token pairs; with the default step's 32 rows in one sequence that is a
third more FLOPs than the whole update.
Limits: models whose attention goes through transformers' attention interface with full
attention in every layer (:func:`packable`: Llama, Qwen2/3, SmolLM, ...; sliding windows and
soft-capping fall back to the padded pass); the attention switch is made on the model's config
while the body runs (not for threads running the same model at the same time); off CPU the
key/value heads are copied to the query heads, as transformers does (CUDA's fused kernels take
no mask with GQA); no GPU was at hand to measure the packed pass there.

**Masked grouped-query attention** (:func:`masked_gqa`). transformers' SDPA path expands the
key/value heads to the query heads (``repeat_kv``, a copy of every layer's keys and values, and
in the backward pass a reduction back) whenever an attention mask is passed, because CUDA's
fused kernels take no mask together with GQA. The update always passes one (left-padded
prompts; completions when ``train.packed_sequences=false``). torch's SDPA on CPU takes both a
mask and ``enable_gqa=True``; transformers passes that flag when ``TRANSFORMERS_SDPA_FORCE_GQA``
is set, which :func:`masked_gqa` does for the duration of a forward pass on CPU.

It saves the copies and their backward reduction (a few percent of an update on CPU) with
bit-identical outputs. Measurements: docs/results.md, "Measurements moved from docstrings".

Limits: transformers versions that read the switch (5.23 does; one that does not copies
the heads as before, same numbers); CPU only (on CUDA a mask with GQA falls back to SDPA's slow
math kernel); a user's own ``TRANSFORMERS_SDPA_FORCE_GQA`` is left as it is; models without GQA
are unaffected; the switch is process-wide while the block runs (not for threads running other
models at the same time).
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import torch

from rlvr.hf_compat import attention_switchable, register_attention, using_attention

FORCE_GQA = "TRANSFORMERS_SDPA_FORCE_GQA"


@contextmanager
def masked_gqa(device: torch.device) -> Iterator[bool]:
    """Within the block, transformers' SDPA attention runs grouped-query attention on the
    key/value heads as they are, mask or not, when ``device`` is a CPU; yields whether it does."""
    if device.type != "cpu" or FORCE_GQA in os.environ:
        yield os.environ.get(FORCE_GQA) == "1"
        return
    os.environ[FORCE_GQA] = "1"
    try:
        yield True
    finally:
        os.environ.pop(FORCE_GQA, None)


# ---------------------------------------------------------------------------------------------
# Packed completions: the update's linear layers run on the real tokens only, attention per row.

ROWS_ATTENTION = "rlvr_rows"  # the name under which rows_attention is registered with transformers


@dataclass
class RowLayout:
    """Where each packed completion token sits in the padded [n, T] grid, and what it attends to.

    The body runs on the N real tokens as one sequence [1, N] (no padding in the linear layers,
    norms and MLPs, which are nearly all the FLOPs); attention alone scatters them back to the
    grid and runs per row, on the row's prompt keys/values followed by its own tokens.
    """

    slot: torch.Tensor  # [N] flat grid index row * T + t of each packed token
    rows: int  # n
    width: int  # T
    keys: list[torch.Tensor]  # per layer [n, kv_heads, P, head_dim]: each row's prompt keys
    values: list[torch.Tensor]  # per layer [n, kv_heads, P, head_dim]
    mask: torch.Tensor  # [n, 1, T, P + T] bool: the row's real prompt tokens, then causal over its own
    layers_run: set = field(default_factory=set)  # layer indices whose attention ran here (a check)

    def to_grid(self, packed: torch.Tensor) -> torch.Tensor:
        """[1, heads, N, d] packed -> [n, heads, T, d] grid (zeros on padding)."""
        flat = packed[0].transpose(0, 1)  # [N, heads, d]
        grid = flat.new_zeros((self.rows * self.width, *flat.shape[1:])).index_copy(0, self.slot, flat)
        return grid.view(self.rows, self.width, *flat.shape[1:]).transpose(1, 2)

    def from_grid(self, grid: torch.Tensor) -> torch.Tensor:
        """[n, heads, T, d] grid -> [1, N, heads, d], the layout transformers expects back."""
        flat = grid.transpose(1, 2).reshape(self.rows * self.width, *grid.shape[1:2], grid.shape[3])
        return flat.index_select(0, self.slot).unsqueeze(0)


@dataclass
class PromptCapture:
    """The keys/values of every layer of a prompt pass, kept as the layers compute them.

    Under gradient checkpointing transformers' layers drop the KV cache in training mode (a cache
    written again on the backward pass's recompute would double), so the prompts' keys/values
    are taken here instead; a recompute overwrites them with equal values.
    """

    mask: torch.Tensor  # [G, 1, P, P] bool: causal over real prompt tokens (a padding query sees itself)
    keys: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> [G, kv_heads, P, head_dim]
    values: dict[int, torch.Tensor] = field(default_factory=dict)


def masked_attention(query, keys, values, mask, dropout: float, scaling) -> torch.Tensor:
    """SDPA with a boolean mask over grouped-query heads: on the key/value heads as they are on
    CPU; copied to the query heads elsewhere (CUDA's fused kernels take no mask with GQA).

    bf16 on CPU runs in fp32: torch's CPU flash-attention backward is about 4x slower in bf16
    than in fp32 at the update's shapes (docs/results.md, "Mixed precision"), and attention is a
    small share of the FLOPs, so the casts cost less than they save."""
    groups = query.shape[1] // keys.shape[1]
    if groups > 1 and query.device.type != "cpu":
        keys, values = keys.repeat_interleave(groups, dim=1), values.repeat_interleave(groups, dim=1)
    dtype = query.dtype
    upcast = query.device.type == "cpu" and (
        torch.bfloat16 in (query.dtype, keys.dtype, values.dtype) or torch.is_autocast_enabled("cpu")
    )
    with torch.autocast(query.device.type, enabled=False) if upcast else nullcontext():
        if upcast:
            query, keys, values = query.float(), keys.float(), values.float()
        out = torch.nn.functional.scaled_dot_product_attention(
            query, keys, values, attn_mask=mask, dropout_p=dropout, scale=scaling,
            enable_gqa=keys.shape[1] != query.shape[1],
        )  # fmt: skip
    return out.to(dtype) if upcast else out


class Passthrough:
    """Carries a :class:`PromptCapture` or :class:`RowLayout` through a model's forward keywords to
    :func:`rows_attention` untouched. FSDP2 rebuilds every dataclass among a sharded layer's inputs
    that holds tensors requiring grad (to hook them for its post-backward), so a record passed bare
    would be copied per layer and the layers would write their keys into the copies."""

    __slots__ = ("record",)

    def __init__(self, record) -> None:
        self.record = record


def passed(kwargs: dict, name: str):
    value = kwargs.get(name)
    return value.record if isinstance(value, Passthrough) else value


def rows_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers attention function (``AttentionInterface``) for packed completions (layout in
    the ``rlvr_rows`` keyword, which transformers passes through to attention) and for prompt
    passes that keep their keys/values (``rlvr_prompts``, a :class:`PromptCapture`)."""
    if kwargs.get("sliding_window") or kwargs.get("softcap"):
        raise RuntimeError("packed completions do not support sliding-window or soft-capped attention")
    capture: PromptCapture | None = passed(kwargs, "rlvr_prompts")
    if capture is not None:
        capture.keys[module.layer_idx], capture.values[module.layer_idx] = key, value
        out = masked_attention(query, key, value, capture.mask, dropout, scaling)
        return out.transpose(1, 2), None
    layout: RowLayout | None = passed(kwargs, "rlvr_rows")
    if layout is None:
        raise RuntimeError(f"the {ROWS_ATTENTION!r} attention needs rlvr_rows or rlvr_prompts (set by rlvr)")
    layer = module.layer_idx
    keys = torch.cat([layout.keys[layer], layout.to_grid(key)], dim=2)
    values = torch.cat([layout.values[layer], layout.to_grid(value)], dim=2)
    grid = masked_attention(layout.to_grid(query), keys, values, layout.mask, dropout, scaling)
    layout.layers_run.add(layer)
    return layout.from_grid(grid), None


register_attention(ROWS_ATTENTION, rows_attention)


def packable(body) -> bool:
    """Whether ``body`` can run packed completions: a decoder whose attention goes through
    transformers' attention interface with full (not sliding-window) attention in every layer."""
    config = getattr(body, "config", None)
    if not attention_switchable(config):
        return False
    if getattr(config, "use_sliding_window", False) or getattr(config, "attn_logit_softcapping", None):
        return False
    types = getattr(config, "layer_types", None)
    if types:
        return all(t == "full_attention" for t in types)
    return not getattr(config, "sliding_window", None)


def checkpointing(body) -> bool:
    """Whether ``body`` runs under gradient checkpointing now (its layers then drop KV caches)."""
    return body.training and any(getattr(m, "gradient_checkpointing", False) for m in body.modules())


def through_recompute(body):
    """A block for a gradient step: under gradient checkpointing the backward pass recomputes
    layers, so rlvr's attention (:func:`row_attention`) stays on until it ends; else nothing."""
    return row_attention(body) if checkpointing(body) else nullcontext()


@contextmanager
def row_attention(body) -> Iterator[None]:
    """Within the block ``body``'s attention layers call :func:`rows_attention`."""
    with using_attention(body.config, ROWS_ATTENTION):
        yield
