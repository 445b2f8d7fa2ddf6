"""Samplers that learn: hand-computed updates, what each skips or favours, exact state round trips."""

import pytest
import torch

from rlvr.errors import ConfigError
from rlvr.samplers import PromptResult, ShuffledSampler, make_sampler
from rlvr.samplers.bandit import mean_abs_advantage, td_update, ucb_choice
from rlvr.samplers.difficulty import beta_update
from rlvr.types import Example


def examples(n: int, categories=("easy", "hard")) -> list[Example]:
    return [Example(f"e{i}", [{"role": "user", "content": str(i)}], "0", {"difficulty": categories[i % 2]})
            for i in range(n)]  # fmt: skip


def result(index: int, right: int, n: int = 4, step: int = 1) -> PromptResult:
    correct = tuple([True] * right + [False] * (n - right))
    return PromptResult(index, step, tuple(float(c) for c in correct), correct)


def test_uniform_is_the_seeded_shuffle():
    a, b = make_sampler(examples(10), "uniform", {}, seed=3), ShuffledSampler(10, 3)
    assert a.next(25) == b.next(25)
    assert a.observe([result(0, 2)]) == {}


def test_pass_rate_skips_what_it_saw_solved_or_failed_and_takes_the_unseen():
    sampler = make_sampler(examples(6), "pass_rate", {"window": 1}, seed=0)
    first = sampler.next(6)  # one epoch: nothing observed yet, nothing skipped
    assert sorted(first) == list(range(6))
    sampler.observe([result(first[0], 4), result(first[1], 0), result(first[2], 2)])
    second = sampler.next(4)  # the next epoch: the all-right and all-wrong prompts are passed over
    assert first[0] not in second and first[1] not in second and first[2] in second
    assert sampler.skipped == 2


def test_pass_rate_window_thresholds_and_retry():
    sampler = make_sampler(examples(4), "pass_rate", {"window": 2, "low": 0.2, "high": 0.8, "retry_after": 3}, seed=0)
    sampler.observe([result(0, 4, step=1), result(0, 3, step=2)])  # mean of (1.0, 0.75) = 0.875 >= 0.8
    sampler.observe([result(1, 4, step=2), result(1, 0, step=2)])  # (1.0, 0.0) -> 0.5: kept
    assert sampler.estimate(0) == pytest.approx(0.875) and not sampler.eligible(0)
    assert sampler.estimate(1) == pytest.approx(0.5) and sampler.eligible(1)
    sampler.observe([result(3, 2, step=5)])  # time moves on: prompt 0 was last seen 3 steps ago
    assert sampler.eligible(0)


def test_pass_rate_never_stalls_when_everything_is_filtered():
    sampler = make_sampler(examples(3), "pass_rate", {}, seed=0)
    sampler.observe([result(0, 4, step=1), result(1, 0, step=2), result(2, 4, step=3)])
    assert sorted(sampler.next(2)) == [0, 1]  # the two observed longest ago come back


def test_beta_update_by_hand():
    assert beta_update(3.0, 2.0, 1.0, 1.0) == 5.0  # exact Bayes: alpha + s
    assert beta_update(3.0, 2.0, 1.0, 0.5) == pytest.approx(0.5 * 3 + 0.5 * 1 + 2)  # 4.0


def test_mopps_posteriors_and_thompson_choice():
    sampler = make_sampler(examples(3), "mopps", {"decay": 1.0}, seed=0)
    sampler.observe([PromptResult(0, 1, (1.0,) * 40, (True,) * 40), PromptResult(1, 1, (0.0,) * 40, (False,) * 40),
                     PromptResult(2, 1, (1.0, 0.0) * 20, (True, False) * 20)])  # fmt: skip
    assert sampler.posterior[0] == (41.0, 1.0) and sampler.posterior[1] == (1.0, 41.0)
    assert sampler.posterior[2] == (21.0, 21.0)
    picks = []
    for _ in range(50):  # one step each: observe() with nothing new ends the step
        picks += sampler.next(1)
        sampler.observe([])
    assert picks.count(2) == 50  # Beta(21, 21) draws sit near 0.5, Beta(41, 1) near 1, Beta(1, 41) near 0


@pytest.mark.parametrize("pool", [0, 1, 2])
def test_mopps_never_repeats_a_prompt_within_a_step(pool):
    sampler = make_sampler(examples(10), "mopps", {"pool": pool}, seed=0)
    for _ in range(30):
        first, second = sampler.next(3), sampler.next(3)  # dynamic sampling's second round, same step
        assert len(set(first + second)) == 6
        sampler.observe([result(i, 2) for i in first + second])
    assert len(make_sampler(examples(2), "mopps", {}, seed=0).next(4)) == 4  # a split smaller than a step


def test_mopps_resumes_with_the_same_draws():
    sampler = make_sampler(examples(20), "mopps", {"pool": 2}, seed=1)
    sampler.next(3)
    sampler.observe([result(i, i % 5) for i in range(20)])
    state = sampler.state_dict()
    expected = [sampler.next(3) for _ in range(4)]
    fresh = make_sampler(examples(20), "mopps", {"pool": 2}, seed=1)
    fresh.load_state_dict(state)
    assert [fresh.next(3) for _ in range(4)] == expected


def test_sec_learning_progress_and_td_update_by_hand():
    # rewards (1, 0, 0, 0): mean 0.25, unbiased std 0.5; A = (0.75, -0.25 x 3) / (0.5 + 1e-4)
    assert mean_abs_advantage((1.0, 0.0, 0.0, 0.0)) == pytest.approx((0.75 + 3 * 0.25) / 4 / 0.5001)
    assert mean_abs_advantage((1.0, 1.0, 1.0)) == 0.0
    assert td_update(0.2, 1.0, 0.5) == pytest.approx(0.6)


def test_ucb_plays_unplayed_arms_first_then_the_bound():
    assert ucb_choice([0.9, 0.0], [3, 0], explore=1.0) == 1
    # N = 4: arm 0: 0.5 + sqrt(2 ln 4 / 3) = 1.461; arm 1: 0.1 + sqrt(2 ln 4 / 1) = 1.765
    assert ucb_choice([0.5, 0.1], [3, 1], explore=1.0) == 1
    assert ucb_choice([0.5, 0.1], [3, 1], explore=0.1) == 0


@pytest.mark.parametrize("policy", ["softmax", "ucb"])
def test_category_bandit_moves_to_the_category_that_teaches(policy):
    train = examples(40)
    sampler = make_sampler(train, "category_bandit", {"policy": policy, "temperature": 0.1}, seed=0)
    for step in range(1, 6):
        picked = sampler.next(8)
        assert all(train[i].meta["difficulty"] in ("easy", "hard") for i in picked)
        # easy prompts' groups disagree (progress), hard ones are all wrong (none)
        metrics = sampler.observe([result(i, 2 if train[i].meta["difficulty"] == "easy" else 0, step=step)
                                   for i in picked])  # fmt: skip
    assert metrics["sampler/q/easy"] > 0.5 and metrics["sampler/q/hard"] == 0.0
    assert metrics["sampler/picked/easy"] >= 0.75
    state = sampler.state_dict()
    again = make_sampler(train, "category_bandit", {"policy": policy, "temperature": 0.1}, seed=0)
    again.load_state_dict(state)
    assert again.next(8) == sampler.next(8)


def test_category_bandit_names_a_missing_field_and_a_single_category():
    with pytest.raises(ConfigError, match="sampler.key='level': train example 'e0' has no such field"):
        make_sampler(examples(4), "category_bandit", {"key": "level"}, seed=0)
    with pytest.raises(ConfigError, match="2\\+ categories"):
        make_sampler(examples(4, categories=("a", "a")), "category_bandit", {}, seed=0)


def test_a_sampler_key_typo_is_named():
    with pytest.raises(ConfigError, match="unknown key 'sampler.windw'.*Did you mean window"):
        make_sampler(examples(4), "pass_rate", {"windw": 2}, seed=0)


def test_grpo_reference_for_mean_abs_advantage():
    from rlvr.algos.advantages import grpo_advantage

    a, _ = grpo_advantage(torch.tensor([[1.0, 0.0, 1.0]]))
    assert mean_abs_advantage((1.0, 0.0, 1.0)) == pytest.approx(a.abs().mean().item())


def test_bookkeeping_bench_times_every_part():
    from rlvr.bench.bookkeeping import SAMPLER_SPECS, measure

    out = measure(prompts=60, steps=3)
    assert len(out) == len(SAMPLER_SPECS) + 2 and all(ms >= 0 for ms in out.values())
