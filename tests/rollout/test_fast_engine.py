"""The fast engine: the HF engine's greedy outputs, the trainer's log-probs, softmax(logits / T) as its
distribution, each distinct prefix prefilled once, finished rows out of the batch."""

import math

import pytest
import torch

from rlvr.cpu.onednn import available, reorderable
from rlvr.learner.forward.logprobs import completion_logprobs
from rlvr.learner.microbatch import make_micro_batches
from rlvr.models import tiny_random
from rlvr.rollout import SamplingParams, generate, prompt_ids
from rlvr.rollout.fast import FastEngine, SlabLayer, draw, plan_chunks
from rlvr.rollout.hf import HFGenerateEngine
from rlvr.tasks import make_task


@pytest.fixture(scope="module")
def engine(lively):
    return FastEngine(*lively, batch_size=64)


@pytest.fixture(scope="module")
def hf(lively):
    return HFGenerateEngine(*lively, batch_size=64)


@pytest.fixture(scope="module")
def examples():
    # different phrasings give prompts of different lengths, so the batch is really left-padded
    return make_task("arithmetic", digits=3, train_size=6).split("train")


def flat(groups):
    return [c for group in groups for c in group]


def assert_same(fast, reference):
    assert len(fast) == len(reference)
    for a, b in zip(fast, reference, strict=True):
        assert (a.token_ids, a.text, a.finish_reason) == (b.token_ids, b.text, b.finish_reason)
        torch.testing.assert_close(torch.tensor(a.logprobs), torch.tensor(b.logprobs), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stop", [[], ["Days", "ci"]])  # "ci" ends inside " sciences"
def test_greedy_equals_the_hf_engine_with_left_padding_and_groups(engine, hf, examples, stop):
    assert len({len(prompt_ids(engine.tokenizer, e)) for e in examples}) > 1
    greedy = SamplingParams(max_new_tokens=10, temperature=0.0, stop=stop)
    fast = flat(generate(engine, examples, 3, greedy))
    assert engine.last_stats["prefill_rows"] == len(examples)
    assert_same(fast, flat(generate(hf, examples, 3, greedy)))
    assert len({tuple(c.token_ids) for c in fast}) > 2  # the outputs really differ per prompt
    if stop:
        reasons = {c.finish_reason for c in fast}
        assert reasons == {"stop", "length"}, "some rows stop on a string, some run to the limit"
        stopped = [c for c in fast if c.finish_reason == "stop"]
        assert len({len(c.token_ids) for c in stopped}) > 1  # at different steps
        assert all(any(c.text.endswith(s) for s in stop) for c in stopped)


def test_greedy_batched_equals_one_at_a_time(engine, examples):
    greedy = SamplingParams(max_new_tokens=8, temperature=0.0)
    together = flat(generate(engine, examples, 2, greedy))
    alone = [c for e in examples for c in flat(generate(engine, [e], 2, greedy))]
    assert_same(together, alone)


def test_interleaved_prefixes_and_small_batches_keep_the_row_order(engine, hf, examples):
    ids = [prompt_ids(engine.tokenizer, e) for e in examples[:3]]
    prefixes = [ids[0], ids[1], ids[0], ids[2], ids[1], ids[0], ids[0]]
    greedy = SamplingParams(max_new_tokens=5, temperature=0.0)
    small = FastEngine(engine.model, engine.tokenizer, batch_size=2)
    assert_same(small.continue_ids(prefixes, greedy), hf.continue_ids(prefixes, greedy))
    assert small.last_stats["chunks"] == 4  # [p0 p0] [p0 p0] [p1 p1] [p2]
    assert_same(engine.continue_ids(prefixes, greedy), hf.continue_ids(prefixes, greedy))
    assert engine.last_stats["prefill_rows"] == 3


def test_a_long_prefix_that_stops_first_takes_its_padding_columns_along(engine, hf, examples):
    """A multi-turn-like prefix three prompts long stops at its 5th token ("bites"); the short rows
    then decode without the ~100 columns of left padding only it needed."""
    ids = [prompt_ids(engine.tokenizer, e) for e in examples]
    prefixes = [ids[0] + ids[1] + ids[2], ids[3], ids[4]]
    greedy = SamplingParams(max_new_tokens=8, temperature=0.0, stop=["bites"])
    fast = engine.continue_ids(prefixes, greedy)
    assert [s.finish_reason for s in fast] == ["stop", "length", "length"] and len(fast[0].token_ids) == 5
    assert engine.last_stats["dropped_columns"] >= len(prefixes[0]) - len(ids[4])
    assert_same(fast, hf.continue_ids(prefixes, greedy))


def test_slab_layer_holds_what_a_dynamic_layer_holds():
    keys, values = torch.randn(3, 2, 4, 5), torch.randn(3, 2, 4, 5)
    slab = SlabLayer(keys, values, capacity=5)
    steps = [(torch.randn(3, 2, 1, 5), torch.randn(3, 2, 1, 5)) for _ in range(3)]  # the third one grows it
    for k, v in steps:
        out_k, out_v = slab.update(k, v)
        keys, values = torch.cat([keys, k], dim=2), torch.cat([values, v], dim=2)
        assert torch.equal(out_k, keys) and torch.equal(out_v, values)
    slab.reorder_cache(torch.tensor([2, 0]))
    slab.drop_leading(3)
    assert slab.get_seq_length() == 4
    assert torch.equal(slab.keys, keys[[2, 0], :, 3:]) and torch.equal(slab.values, values[[2, 0], :, 3:])


def test_plan_chunks_keeps_groups_whole_where_they_fit():
    groups = [([1], [0, 1, 2]), ([2], [3, 4]), ([3], [5, 6, 7, 8, 9, 10, 11])]
    chunks = plan_chunks(groups, batch_size=5)
    assert [[rows for _, rows in chunk] for chunk in chunks] == [[[0, 1, 2], [3, 4]], [[5, 6, 7, 8, 9]], [[10, 11]]]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampled_logprobs_equal_a_teacher_forced_forward(engine, examples, temperature):
    torch.manual_seed(0)
    sampling = SamplingParams(max_new_tokens=8, temperature=temperature, stop=["e"])
    completions = flat(generate(engine, examples[:4], 4, sampling))
    lengths = [len(c.token_ids) for c in completions]
    assert len(set(lengths)) > 2, "rows finish at different steps"
    assert engine.last_stats["decode_row_steps"] < len(completions) * 7  # finished rows left the batch
    width = max(lengths)
    zeros = {"advantages": torch.zeros(len(completions), width)}
    batches = make_micro_batches(completions, zeros, size=64, pad_id=engine.tokenizer.pad_token_id)
    with torch.no_grad():
        recomputed, _ = completion_logprobs(engine.model, batches[0], temperature=temperature)
    torch.testing.assert_close(batches[0].old_logprobs, recomputed * batches[0].mask, rtol=1e-4, atol=1e-4)


def total_variation_and_bound(samples: torch.Tensor, probs: torch.Tensor) -> tuple[float, float]:
    """TV(empirical, probs) and 1.5 x its expectation bound 0.5 * sum sqrt(p (1 - p) / n)."""
    n = samples.numel()
    empirical = torch.bincount(samples, minlength=probs.numel()).double() / n
    p = probs.double()
    return 0.5 * (empirical - p).abs().sum().item(), 1.5 * 0.5 * torch.sqrt(p * (1 - p) / n).sum().item()


def test_draw_follows_the_probabilities_and_never_draws_a_zero():
    torch.manual_seed(0)
    probs = torch.softmax(torch.randn(1000) * 2, dim=0) * 3.0  # unnormalized; 1000 is not a block multiple
    probs[[0, 5, 999]] = 0.0
    samples = draw(probs.expand(20000, -1))
    assert not torch.isin(samples, torch.tensor([0, 5, 999])).any()
    tv, bound = total_variation_and_bound(samples, probs / probs.sum())
    assert tv < bound


def test_first_token_distribution_is_softmax_of_logits_over_temperature(examples):
    """At T = 0.01 tiny-random's (default init) next-token distribution sits on a few tokens,
    so a few thousand samples resolve it; top-p keeps exactly the nucleus."""
    model, tokenizer = tiny_random(seed=3)
    engine = FastEngine(model, tokenizer, batch_size=500)
    ids = prompt_ids(tokenizer, examples[0])
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, -1]
    probs = torch.softmax(logits.double() / 0.01, dim=0)
    n = 2000
    torch.manual_seed(0)
    samples = engine.continue_ids([ids] * n, SamplingParams(max_new_tokens=1, temperature=0.01))
    assert engine.last_stats["prefill_rows"] == 4 and engine.last_stats["decode_row_steps"] == 0
    first = torch.tensor([s.token_ids[0] for s in samples])
    tv, bound = total_variation_and_bound(first, probs)
    assert tv < bound
    assert all(math.isclose(s.logprobs[0], probs[s.token_ids[0]].log().item(), abs_tol=1e-4) for s in samples[:50])

    ordered, order = torch.sort(probs, descending=True)
    size = int((ordered.cumsum(0) < 0.5).sum()) + 1  # the smallest set holding >= top_p
    nucleus = order[:size]
    assert 1 < size < 10
    samples = engine.continue_ids([ids] * n, SamplingParams(max_new_tokens=1, temperature=0.01, top_p=0.5))
    first = torch.tensor([s.token_ids[0] for s in samples])
    assert torch.isin(first, nucleus).all()
    truncated = torch.zeros_like(probs)
    truncated[nucleus] = probs[nucleus] / probs[nucleus].sum()
    tv, bound = total_variation_and_bound(first, truncated)
    assert tv < bound


class EosLikely(torch.nn.Module):
    """A causal LM with eos's logit raised by ``boost``: rows end on eos at different steps."""

    def __init__(self, model, eos: int, boost: float) -> None:
        super().__init__()
        self.inner, self.config, self.eos, self.boost = model, model.config, eos, boost

    def forward(self, input_ids=None, cache=None, **kwargs):  # ``cache``: the keyword transformers >= 5.24 takes
        out = self.inner(input_ids=input_ids, cache=cache, **kwargs)
        out.logits[..., self.eos] += self.boost
        return out


def test_eos_ends_a_row_and_is_kept(lively, examples):
    model, tokenizer = lively
    eos = tokenizer.eos_token_id
    ids = [prompt_ids(tokenizer, e) for e in examples[:2]]
    with torch.no_grad():
        logits = model(torch.tensor([ids[0]])).logits[0, -1]
    boost = (torch.logsumexp(logits, 0) - logits[eos]).item() + math.log(0.4 / 0.6)  # eos first: p = 0.4
    biased = EosLikely(model, eos, boost=boost)
    engine = FastEngine(biased, tokenizer, batch_size=64)
    prefixes = [ids[0]] * 8 + [ids[1]] * 8
    torch.manual_seed(0)
    samples = engine.continue_ids(prefixes, SamplingParams(max_new_tokens=6, temperature=1.0))
    ended = [s for s in samples if s.finish_reason == "stop"]
    assert ended and len(ended) < len(samples)
    assert len({len(s.token_ids) for s in ended}) > 1
    for s in samples:
        assert (s.token_ids[-1] == eos) == (s.finish_reason == "stop") and eos not in s.token_ids[:-1]
        assert s.finish_reason == "stop" or len(s.token_ids) == 6
        assert s.text == tokenizer.decode(s.token_ids, skip_special_tokens=True)
    assert engine.last_stats["decode_row_steps"] < 16 * 5
    # the recorded log-probs are those of the biased model, with its finished rows gone from the batch
    with torch.no_grad():
        for p, s in zip(prefixes, samples, strict=True):
            logits = biased(input_ids=torch.tensor([p + s.token_ids])).logits[0, len(p) - 1 : -1]
            expected = torch.log_softmax(logits, dim=-1).gather(1, torch.tensor(s.token_ids)[:, None]).squeeze(1)
            torch.testing.assert_close(torch.tensor(s.logprobs), expected, rtol=1e-4, atol=1e-4)


def test_length_limit_and_single_token(engine, examples):
    ids = [prompt_ids(engine.tokenizer, e) for e in examples[:2]]
    torch.manual_seed(2)
    samples = engine.continue_ids([ids[0]] * 3 + [ids[1]] * 3, SamplingParams(max_new_tokens=4, temperature=1.0))
    assert all(s.finish_reason == "length" and len(s.token_ids) == len(s.logprobs) == 4 for s in samples)
    linears = sum(reorderable(m) for m in engine.model.modules()) if available() else 0
    assert engine.last_stats == {"prefill_rows": 2, "prefill_tokens": len(ids[0]) + len(ids[1]),
                                 "decode_row_steps": 6 * 3, "chunks": 1, "dropped_columns": 0,
                                 "onednn_linears": linears}  # fmt: skip
    samples = engine.continue_ids([ids[0]] * 3, SamplingParams(max_new_tokens=1, temperature=0.0))
    assert all(s.finish_reason == "length" and len(s.token_ids) == 1 for s in samples)
    assert engine.last_stats["decode_row_steps"] == 0
    assert engine.continue_ids([], SamplingParams()) == []
    with pytest.raises(ValueError, match="prefix 1 is empty"):
        engine.continue_ids([ids[0], []], SamplingParams())


def test_a_lora_wrapped_policy_decodes_as_with_hf(lively, examples):
    pytest.importorskip("peft")
    from copy import deepcopy

    from rlvr.models import add_lora

    model, tokenizer = lively
    wrapped = add_lora(deepcopy(model), rank=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"])
    with torch.no_grad():  # a trained adapter, not the identity a fresh one is
        for name, p in wrapped.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(1))
    greedy = SamplingParams(max_new_tokens=5, temperature=0.0)
    fast = flat(generate(FastEngine(wrapped, tokenizer), examples[:3], 2, greedy))
    assert_same(fast, flat(generate(HFGenerateEngine(wrapped, tokenizer), examples[:3], 2, greedy)))


def test_no_logprobs_and_training_mode_restored(engine, examples):
    engine.model.train()
    (group,) = generate(engine, examples[:1], 2, SamplingParams(max_new_tokens=3, return_logprobs=False))
    assert all(c.logprobs == [0.0] * len(c.token_ids) for c in group)
    assert engine.model.training
    engine.model.eval()
