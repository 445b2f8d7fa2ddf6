"""rlvr.hf_compat against the installed transformers: every access to its internals, exercised.
pyproject declares the same range as ``TESTED_RANGE``; a transformers outside it is checked here first."""

import tomllib
import warnings
from pathlib import Path

import torch

from rlvr import hf_compat
from rlvr.models import tiny_random

ROOT = Path(__file__).resolve().parent.parent


def test_pyproject_declares_the_tested_range_with_an_upper_bound():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    declared = next(d for d in deps if d.startswith("transformers"))
    assert declared == f"transformers{hf_compat.TESTED_RANGE}" and "<" in declared


def test_cache_keyword_and_output_cache_give_no_deprecation_warning():
    model, _ = tiny_random(seed=0)
    ids = torch.tensor([[1, 2, 3]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = model(input_ids=ids, use_cache=True, **hf_compat.cache_kwargs(model, hf_compat.DynamicCache()))
        cache = hf_compat.output_cache(out)
        nxt = model(input_ids=ids[:, :1], use_cache=True, **hf_compat.cache_kwargs(model, cache))
    assert len(cache.layers) == model.config.num_hidden_layers and nxt.logits.shape[1] == 1
    assert cache.layers[0].keys.shape[2] == 4  # 3 prompt tokens + 1 fed after


def test_cache_from_holds_the_given_layers():
    keys = [torch.randn(2, 1, 3, 4) for _ in range(2)]
    values = [torch.randn(2, 1, 3, 4) for _ in range(2)]
    cache = hf_compat.cache_from(keys, values)
    assert all(
        torch.equal(c.keys, k) and torch.equal(c.values, v) for c, k, v in zip(cache.layers, keys, values, strict=True)
    )


def test_attention_switch_is_restored():
    model, _ = tiny_random(seed=0)
    config = model.model.config
    assert hf_compat.attention_switchable(config)
    before = config._attn_implementation_internal
    hf_compat.register_attention("test_noop", lambda *a, **k: None)
    with hf_compat.using_attention(config, "test_noop"):
        assert config._attn_implementation_internal == "test_noop"
    assert config._attn_implementation_internal == before


def test_rope_settings_build_a_config():
    from transformers import Qwen2Config

    config = Qwen2Config(hidden_size=8, num_attention_heads=2, num_key_value_heads=1, **hf_compat.rope_settings(1e6))
    assert config.rope_parameters["rope_theta"] == 1e6
