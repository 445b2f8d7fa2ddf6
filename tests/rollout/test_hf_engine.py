"""The transformers engine: left padding is invisible, log-probs are the trainer's, stops work."""

import pytest
import torch

from rlvr.learner.forward.logprobs import completion_logprobs
from rlvr.learner.microbatch import make_micro_batches
from rlvr.models import tiny_random
from rlvr.rollout import SamplingParams, generate, prompt_ids
from rlvr.rollout.hf import HFGenerateEngine
from rlvr.tasks import make_task


@pytest.fixture(scope="module")
def engine():
    model, tokenizer = tiny_random(seed=3)
    return HFGenerateEngine(model, tokenizer, batch_size=64)


@pytest.fixture(scope="module")
def examples():
    # different phrasings give prompts of different lengths, so the batch is really left-padded
    return make_task("arithmetic", digits=3, train_size=6).split("train")


def test_greedy_batched_with_left_padding_equals_one_at_a_time(engine, examples):
    greedy = SamplingParams(max_new_tokens=6, temperature=0.0)
    lengths = {len(prompt_ids(engine.tokenizer, e)) for e in examples}
    assert len(lengths) > 1
    batched = generate(engine, examples, 1, greedy)
    for example, (together,) in zip(examples, batched, strict=True):
        (alone,) = generate(engine, [example], 1, greedy)[0]
        assert together.token_ids == alone.token_ids


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampled_logprobs_equal_a_teacher_forced_forward(engine, examples, temperature):
    torch.manual_seed(0)
    groups = generate(engine, examples[:3], 4, SamplingParams(max_new_tokens=5, temperature=temperature))
    completions = [c for group in groups for c in group]
    assert all(len(c.logprobs) == len(c.token_ids) == len(c.loss_mask) for c in completions)
    assert all(c.loss_mask == [1] * len(c.token_ids) for c in completions)
    width = max(len(c.token_ids) for c in completions)
    zeros = {"advantages": torch.zeros(len(completions), width)}
    batches = make_micro_batches(completions, zeros, size=64, pad_id=engine.tokenizer.pad_token_id)
    with torch.no_grad():
        recomputed, _ = completion_logprobs(engine.model, batches[0], temperature=temperature)
    torch.testing.assert_close(batches[0].old_logprobs, recomputed * batches[0].mask, rtol=1e-4, atol=1e-4)


def test_length_limit_and_stop_strings(engine, examples):
    (group,) = generate(engine, examples[:1], 3, SamplingParams(max_new_tokens=4, temperature=1.0))
    assert all(c.finish_reason == "length" and len(c.token_ids) == 4 for c in group)
    torch.manual_seed(1)
    (group,) = generate(engine, examples[:1], 8, SamplingParams(max_new_tokens=12, temperature=1.0, stop=[" "]))
    eos = engine.tokenizer.eos_token_id
    stopped = [c for c in group if c.finish_reason == "stop" and c.token_ids[-1] != eos]
    assert stopped, "a space appears within 12 random tokens"
    decode = engine.tokenizer.decode
    for c in stopped:
        assert c.text.find(" ") == len(c.text) - 1  # the text ends at the first stop string
        assert " " in decode(c.token_ids) and " " not in decode(c.token_ids[:-1])  # tokens end where it appeared


def test_generation_leaves_the_model_in_training_mode(engine, examples):
    engine.model.train()
    generate(engine, examples[:1], 1, SamplingParams(max_new_tokens=1))
    assert engine.model.training
