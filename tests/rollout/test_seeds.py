"""Placement-free sampling: a row's tokens depend on (seed, prefix, occurrence), not on batching,
chunking, the other rows of the call, or the engine."""

import pytest
import torch

from rlvr.rollout import SamplingParams
from rlvr.rollout.fast import FastEngine, draw
from rlvr.rollout.hf import HFGenerateEngine
from rlvr.rollout.seeds import derive_seed, prefix_seeds, row_seeds, row_uniforms

PREFIXES = [[5, 6, 7], [5, 6, 7], [9, 3], [5, 6, 7], [9, 3], [11, 12, 13, 14]]
SAMPLING = SamplingParams(max_new_tokens=12, temperature=1.0, seed=1234)


def test_derive_seed_is_stable_and_distinct():
    assert derive_seed(0, "rollout", 3) == derive_seed(0, "rollout", 3)  # no per-process salt
    assert derive_seed(0, "rollout", 3) != derive_seed(0, "rollout", 4)
    assert 0 <= derive_seed("x") < 2**63


def test_prefix_seeds_count_occurrences():
    seeds = prefix_seeds(PREFIXES, 7)
    assert len(set(seeds)) == len(seeds)  # equal prefixes: distinct streams by occurrence
    # a prefix's k-th occurrence has the same seed whatever comes between
    alone = prefix_seeds([[5, 6, 7], [5, 6, 7], [5, 6, 7]], 7)
    assert alone == [seeds[0], seeds[1], seeds[3]]
    assert prefix_seeds(PREFIXES, 8) != seeds
    with pytest.raises(ValueError, match="2 seeds for 6 prefixes"):
        row_seeds(PREFIXES, None, [1, 2])
    assert row_seeds(PREFIXES, None, None) is None


def test_row_uniforms_are_per_row():
    u = row_uniforms([3, 4, 3], 5)
    assert u.shape == (3, 5) and u.dtype == torch.float64
    assert torch.equal(u[0], u[2]) and not torch.equal(u[0], u[1])
    assert torch.equal(row_uniforms([4], 5)[0], u[1])


def test_draw_with_given_uniforms_is_inverse_cdf():
    probs = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    # cdf 0.1 0.3 0.6 1.0: u=0.05 -> 0, 0.25 -> 1, 0.59 -> 2, 0.61 -> 3
    for u, token in [(0.05, 0), (0.25, 1), (0.59, 2), (0.61, 3)]:
        assert draw(probs, u=torch.tensor([u]), block=2).item() == token


def rows(samples):
    return [(s.token_ids, s.finish_reason) for s in samples]


@pytest.mark.parametrize("batch_size", [1, 2, 64])
def test_fast_engine_rows_do_not_depend_on_batching_or_company(lively, batch_size):
    whole = FastEngine(*lively, batch_size=64).continue_ids(PREFIXES, SAMPLING)
    engine = FastEngine(*lively, batch_size=batch_size)
    assert rows(engine.continue_ids(PREFIXES, SAMPLING)) == rows(whole)
    # the rows split over two "workers", each told its rows' seeds (as a rollout pool does)
    seeds = prefix_seeds(PREFIXES, SAMPLING.seed)
    first, second = [0, 2, 5], [1, 3, 4]
    a = engine.continue_ids([PREFIXES[i] for i in first], SAMPLING, [seeds[i] for i in first])
    b = engine.continue_ids([PREFIXES[i] for i in second], SAMPLING, [seeds[i] for i in second])
    merged = dict(zip(first + second, a + b, strict=True))
    assert rows([merged[i] for i in range(len(PREFIXES))]) == rows(whole)
    for x, y in zip(merged.values(), [whole[i] for i in first + second], strict=True):
        assert x.logprobs == pytest.approx(y.logprobs, abs=1e-5)


def test_seeded_rows_differ_and_a_new_seed_changes_them(lively):
    engine = FastEngine(*lively)
    out = engine.continue_ids(PREFIXES, SAMPLING)
    assert out[0].token_ids != out[1].token_ids  # the same prompt's samples are not copies
    other = engine.continue_ids(PREFIXES, SamplingParams(max_new_tokens=12, seed=99))
    assert rows(other) != rows(out)


def test_hf_engine_samples_the_fast_engines_tokens(lively):
    fast = FastEngine(*lively).continue_ids(PREFIXES, SAMPLING)
    hf = HFGenerateEngine(*lively, batch_size=4).continue_ids(PREFIXES, SAMPLING)
    assert rows(hf) == rows(fast)
    for x, y in zip(hf, fast, strict=True):
        assert x.logprobs == pytest.approx(y.logprobs, abs=1e-4)


def test_top_p_with_seeds(lively):
    sampling = SamplingParams(max_new_tokens=8, temperature=1.0, top_p=0.5, seed=5)
    one = FastEngine(*lively, batch_size=1).continue_ids(PREFIXES, sampling)
    assert rows(FastEngine(*lively).continue_ids(PREFIXES, sampling)) == rows(one)
    assert rows(HFGenerateEngine(*lively).continue_ids(PREFIXES, sampling)) == rows(one)
