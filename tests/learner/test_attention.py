"""masked_gqa: the update's attention runs on the key/value heads as they are, same numbers."""

import inspect
import os

import pytest
import torch
import transformers.integrations.sdpa_attention as sdpa

from rlvr.learner.forward.attention import FORCE_GQA, masked_gqa
from rlvr.learner.forward.logprobs import completion_logprobs
from rlvr.learner.microbatch import make_micro_batches
from rlvr.models import tiny_random
from tests.learner.test_update import grouped_rows, per_token


@pytest.fixture
def repeats(monkeypatch):
    """Calls of transformers' repeat_kv (the key/value head copies) while the test runs."""
    calls = []
    real = sdpa.repeat_kv

    def counting(hidden_states, n_rep):
        calls.append(n_rep)
        return real(hidden_states, n_rep)

    monkeypatch.setattr(sdpa, "repeat_kv", counting)
    monkeypatch.delenv(FORCE_GQA, raising=False)
    return calls


def logprobs_and_grads(model, batch):
    model.zero_grad(set_to_none=True)
    logprobs, _ = completion_logprobs(
        model, batch, 1.0, chunk=8, packed_sequences=False
    )  # the padded pass: HF's attention
    (logprobs * batch.mask).sum().backward()
    return logprobs.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.skipif(
    FORCE_GQA not in inspect.getsource(sdpa), reason="this transformers version has no TRANSFORMERS_SDPA_FORCE_GQA"
)
def test_update_attention_skips_the_head_copies_with_the_same_numbers(repeats, monkeypatch):
    model, _ = tiny_random(seed=3)  # 4 query heads on 2 key/value heads
    assert model.config.num_key_value_heads < model.config.num_attention_heads
    rows = grouped_rows(prompts=2, group=3)
    batch = make_micro_batches(rows, per_token(rows, [1.0] * len(rows)), size=6, pad_id=0)[0]
    fast, fast_grads = logprobs_and_grads(model, batch)
    assert repeats == [] and FORCE_GQA not in os.environ  # no copies; the switch is gone after the block
    monkeypatch.setenv(FORCE_GQA, "0")  # a user's own setting wins: transformers copies the heads
    plain, plain_grads = logprobs_and_grads(model, batch)
    assert len(repeats) > 0 and os.environ[FORCE_GQA] == "0"
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-6)
    assert fast_grads.keys() == plain_grads.keys()
    for name, grad in fast_grads.items():
        torch.testing.assert_close(grad, plain_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_masked_gqa_is_for_cpu_only_and_restores_the_environment(monkeypatch):
    monkeypatch.delenv(FORCE_GQA, raising=False)
    with masked_gqa(torch.device("cpu")) as on:
        assert on and os.environ[FORCE_GQA] == "1"
    assert FORCE_GQA not in os.environ
    with masked_gqa(torch.device("cuda")) as on:  # CUDA's fused kernels take no mask with GQA
        assert not on and FORCE_GQA not in os.environ
    with pytest.raises(KeyError), masked_gqa(torch.device("cpu")):
        raise KeyError("inside")
    assert FORCE_GQA not in os.environ
