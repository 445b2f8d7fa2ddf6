"""Every access rlvr makes to transformers' internals, in one place, behind one tested version range.

rlvr reaches below transformers' public API in a few places: it registers its own attention
function (``AttentionInterface``) and switches a model's attention implementation for a block
(``config._attn_implementation_internal``); it builds and reshapes KV caches (``DynamicCache`` and
its ``layers``, ``DynamicLayer``); it names the cache keyword of a forward call, which transformers
renamed from ``past_key_values`` to ``cache`` (the old name prints a FutureWarning on every call);
and it builds configs whose RoPE settings moved into ``rope_parameters``. Each of these goes
through a function here, so a new transformers release is checked (and fixed) in one module:
``tests/test_hf_compat.py`` exercises every one. ``TESTED_RANGE`` is the range pyproject declares.
"""

import inspect
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from transformers import AttentionInterface, DynamicCache
from transformers.cache_utils import DynamicLayer

TESTED_RANGE = ">=5.23,<5.25"  # keep equal to pyproject's transformers requirement

__all__ = [
    "DynamicCache",
    "DynamicLayer",
    "TESTED_RANGE",
    "attention_switchable",
    "cache_from",
    "cache_kwargs",
    "enable_checkpointing",
    "output_cache",
    "quiet_libraries",
    "register_attention",
    "rope_settings",
    "using_attention",
]


def register_attention(name: str, fn) -> None:
    """Make ``fn`` selectable as attention implementation ``name`` (transformers' extension point)."""
    AttentionInterface.register(name, fn)


def attention_switchable(config) -> bool:
    """Whether a model config carries the attention-implementation switch :func:`using_attention` sets."""
    return config is not None and hasattr(config, "_attn_implementation_internal")


@contextmanager
def using_attention(config, name: str) -> Iterator[None]:
    """Within the block, the model of ``config`` runs attention implementation ``name``."""
    previous = config._attn_implementation_internal
    config._attn_implementation_internal = name
    try:
        yield
    finally:
        config._attn_implementation_internal = previous


@lru_cache(maxsize=64)
def _cache_keyword(forward) -> str:
    parameters = inspect.signature(forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def cache_kwargs(model, cache) -> dict:
    """``{keyword: cache}`` for a forward call of ``model``: ``cache`` where the model's forward takes
    it (transformers >= 5.24), else the older ``past_key_values`` (no FutureWarning either way)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT passes it through
    return {_cache_keyword(type(base).forward): cache}


def cache_from(keys: list, values: list) -> DynamicCache:
    """A KV cache holding the given per-layer keys and values ([rows, kv_heads, P, head_dim] each)."""
    cache = DynamicCache()
    for layer, (k, v) in enumerate(zip(keys, values, strict=True)):
        cache.update(k, v, layer)
    return cache


def output_cache(out):
    """The KV cache a forward call returned (``out.cache``, formerly ``out.past_key_values``)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def rope_settings(theta: float) -> dict:
    """Config keywords for default RoPE at base ``theta``: ``rope_parameters`` (transformers 5)."""
    return {"rope_parameters": {"rope_type": "default", "rope_theta": theta}}


def enable_checkpointing(model) -> None:
    """Activation (gradient) checkpointing: ``activation_checkpointing_enable`` where transformers
    has it (the older ``gradient_checkpointing_enable`` warns that it is deprecated)."""
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable()


def quiet_libraries() -> None:
    """rlvr shows its own progress; transformers' per-file loading bars and info logs only clutter it."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    # Deprecations raised inside transformers/PEFT by their own calls (generate's cache keyword, PEFT's
    # use of ``is_gradient_checkpointing``): nothing a user of rlvr can change; rlvr's own calls use the new names.
    warnings.filterwarnings("ignore", message=r"`past_key_values` is deprecated", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
