"""Advantage estimators beyond GRPO: hand-computed numbers, loop references, invariants."""

import itertools
import math

import pytest
import torch

from rlvr.algos import ADVANTAGES


def adv(name, rewards, **kwargs):
    return ADVANTAGES.get(name)(torch.tensor(rewards), **kwargs)[0]


def test_dr_grpo_hand_computed():
    # means 0.5 and 1: r - mean, no std division
    torch.testing.assert_close(adv("dr_grpo", [[1.0, 0.0, 0.0, 1.0]]), torch.tensor([[0.5, -0.5, -0.5, 0.5]]))
    torch.testing.assert_close(adv("dr_grpo", [[2.0, 0.0, 1.0]]), torch.tensor([[1.0, -1.0, 0.0]]))


def test_rloo_hand_computed():
    # 1 - mean(0, 0, 1) = 2/3; 0 - mean(1, 0, 1) = -2/3
    torch.testing.assert_close(adv("rloo", [[1.0, 0.0, 0.0, 1.0]]), torch.tensor([[2 / 3, -2 / 3, -2 / 3, 2 / 3]]))
    # 2 - mean(0, 1) = 1.5; 0 - mean(2, 1) = -1.5; 1 - mean(2, 0) = 0
    torch.testing.assert_close(adv("rloo", [[2.0, 0.0, 1.0]]), torch.tensor([[1.5, -1.5, 0.0]]))


def rloo_reference(rewards: list[list[float]]) -> list[list[float]]:
    return [[r - sum(group[:i] + group[i + 1 :]) / (len(group) - 1) for i, r in enumerate(group)] for group in rewards]


def test_rloo_equals_a_loop_reference():
    torch.manual_seed(0)
    rewards = torch.rand(5, 6)
    expected = torch.tensor(rloo_reference(rewards.tolist()))
    torch.testing.assert_close(ADVANTAGES.get("rloo")(rewards)[0], expected)


def test_rloo_needs_two_completions():
    with pytest.raises(ValueError, match="at least 2"):
        adv("rloo", [[1.0]])


def test_reinforce_pp_normalizes_group_centred_rewards_by_the_batch_std():
    # centred: [0.5, -0.5], [0, 0]; batch values {0.5, -0.5, 0, 0}: mean 0, unbiased var 0.5 / 3,
    # std sqrt(1/6) = 0.408248 -> 0.5 / 0.408248 = sqrt(1.5) = 1.224745 (GRPO would give 0.707107)
    advantages = adv("reinforce_pp", [[1.0, 0.0], [1.0, 1.0]], eps=0.0)
    s = math.sqrt(1.5)
    torch.testing.assert_close(advantages, torch.tensor([[s, -s], [0.0, 0.0]]))


def test_reinforce_pp_plain_uses_the_batch_mean_and_std():
    # batch mean 0.75; deviations 0.25, -0.75, 0.25, 0.25: unbiased var 0.75 / 3 = 0.25, std 0.5
    advantages = adv("reinforce_pp_plain", [[1.0, 0.0], [1.0, 1.0]], eps=0.0)
    torch.testing.assert_close(advantages, torch.tensor([[0.5, -1.5], [0.5, 0.5]]))


def test_pass_k_hand_computed():
    # n = 4, k = 2. c = 1: R = 1 - C(3,2)/C(4,2) = 1 - 3/6 = 0.5, sigma = 0.5,
    #   A+ = 0.5 / 0.5 = 1, A- = (1 - 0.5 - C(2,1)/C(3,1)) / 0.5 = (0.5 - 2/3) / 0.5 = -1/3.
    # c = 2: R = 1 - C(2,2)/6 = 5/6, sigma = sqrt(5)/6,
    #   A+ = (1/6) / (sqrt(5)/6) = 1/sqrt(5), A- = (1/6 - C(1,1)/C(3,1)) / (sqrt(5)/6) = -1/sqrt(5).
    advantages = adv("pass_k", [[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 1.0, 0.0]], pass_k=2, eps=0.0)
    s = 1 / math.sqrt(5)
    torch.testing.assert_close(advantages, torch.tensor([[-1 / 3, 1.0, -1 / 3, -1 / 3], [s, -s, s, -s]]))


def pass_k_reference(group: list[float], k: int) -> list[float]:
    """Brute force over every size-k subset: a subset's reward is its max; a response's
    advantage is the mean over the subsets that contain it of (reward - R) / sigma."""
    subsets = list(itertools.combinations(range(len(group)), k))
    reward = {s: max(group[i] for i in s) for s in subsets}
    r_group = sum(reward.values()) / len(subsets)
    sigma = math.sqrt(r_group * (1 - r_group))
    out = []
    for i in range(len(group)):
        mine = [reward[s] for s in subsets if i in s]
        out.append(0.0 if sigma == 0 else sum(m - r_group for m in mine) / len(mine) / sigma)
    return out


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_pass_k_equals_a_brute_force_subset_reference(k):
    torch.manual_seed(k)
    rewards = (torch.rand(6, 5) > 0.5).float()
    rewards[0], rewards[1] = 1.0, 0.0  # an all-correct and an all-wrong group
    expected = torch.tensor([pass_k_reference(group, k) for group in rewards.tolist()])
    torch.testing.assert_close(adv("pass_k", rewards.tolist(), pass_k=k, eps=0.0), expected)


def test_pass_k_with_k_1_is_grpo_with_the_population_std():
    # p = 0.25, population std sqrt(0.25 * 0.75) = 0.433013: 0.75 / 0.433 = 1.732051, -0.25 / 0.433 = -0.577350
    advantages = adv("pass_k", [[1.0, 0.0, 0.0, 0.0]], pass_k=1, eps=0.0)
    sigma = math.sqrt(0.25 * 0.75)
    torch.testing.assert_close(advantages, torch.tensor([[0.75 / sigma, -0.25 / sigma, -0.25 / sigma, -0.25 / sigma]]))


def test_pass_k_saturated_groups_get_zero():
    # n = 4, k = 2, c = 3 > n - k: every pair holds a correct answer, R = 1, sigma = 0 -> no signal
    torch.testing.assert_close(adv("pass_k", [[0.0, 1.0, 1.0, 1.0]], pass_k=2), torch.zeros(1, 4))


def test_pass_k_rejects_non_binary_rewards_and_k_above_the_group():
    with pytest.raises(ValueError, match="binary rewards"):
        adv("pass_k", [[1.0, 0.5]], pass_k=1)
    with pytest.raises(ValueError, match="between 1 and the group size 2"):
        adv("pass_k", [[1.0, 0.0]], pass_k=3)


def test_bnpo_hand_computed():
    # p = 0.25, 0.25, 0.5, 0.75, 0.75: m = 0.5, unbiased v = 4 * (1/16) / 4 = 1/16,
    # m (1 - m) / v - 1 = 0.25 * 16 - 1 = 3, a = b = 3 * 0.5 = 1.5, alpha = beta = 1 + 1.5 / 3 = 1.5.
    # Beta(1.5, 1.5) density: sqrt(p (1 - p)) / B(1.5, 1.5), B(1.5, 1.5) = Gamma(1.5)^2 / Gamma(3) = pi / 8,
    # so A = (r - p) * pi / (8 sqrt(p (1 - p))): at p = 0.5, +-0.5 * pi / 4 = +-pi / 8.
    rewards = [[1.0, 0, 0, 0], [0, 1.0, 0, 0], [1.0, 1.0, 0, 0], [1.0, 1.0, 1.0, 0], [0, 1.0, 1.0, 1.0]]
    advantages, metrics = ADVANTAGES.get("bnpo")(torch.tensor(rewards))
    r = torch.tensor(rewards)
    p = r.mean(dim=1, keepdim=True)
    torch.testing.assert_close(advantages, (r - p) * math.pi / (8 * torch.sqrt(p * (1 - p))))
    assert advantages[2, 0].item() == pytest.approx(math.pi / 8)
    assert metrics["adv/bnpo_a"] == pytest.approx(1.5) and metrics["adv/bnpo_b"] == pytest.approx(1.5)
    assert metrics["adv/bnpo_alpha"] == pytest.approx(1.5) and metrics["adv/bnpo_beta"] == pytest.approx(1.5)


def test_bnpo_with_one_group_is_the_plain_group_baseline():
    # no fit from one p value: a = b = 0, alpha = beta = 1, f_N = 1 -> A = r - p (= dr_grpo)
    advantages, metrics = ADVANTAGES.get("bnpo")(torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    torch.testing.assert_close(advantages, torch.tensor([[0.75, -0.25, -0.25, -0.25]]))
    assert metrics["adv/bnpo_alpha"] == metrics["adv/bnpo_beta"] == 1.0


def test_bnpo_gives_finite_zero_advantages_to_agreeing_groups_and_rejects_rewards_outside_0_1():
    # p = 0, 1, 0.5, 0.5: v = 1/6, a = b = 0.25, alpha = beta = 13/12 > 1: f_N(0) = f_N(1) = 0
    advantages, _ = ADVANTAGES.get("bnpo")(torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0]]))
    assert torch.isfinite(advantages).all()
    assert torch.equal(advantages[:2], torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ADVANTAGES.get("bnpo")(torch.tensor([[2.0, 0.0]]))


KWARGS = {
    "grpo": {"eps": 1e-4},
    "reinforce_pp": {"eps": 1e-4},
    "reinforce_pp_plain": {"eps": 1e-4},
    "pass_k": {"pass_k": 2},
}


@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "rloo", "reinforce_pp"])
def test_mean_baseline_advantages_sum_to_zero_in_each_group(name):
    torch.manual_seed(1)
    advantages, _ = ADVANTAGES.get(name)(torch.rand(4, 6), **KWARGS.get(name, {}))
    torch.testing.assert_close(advantages.sum(dim=1), torch.zeros(4), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "rloo", "reinforce_pp", "pass_k", "bnpo"])
def test_groups_whose_rewards_agree_get_zero(name):
    rewards = torch.tensor([[1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    advantages, metrics = ADVANTAGES.get(name)(rewards, **KWARGS.get(name, {}))
    assert torch.equal(advantages[1:3], torch.zeros(2, 4))
    assert (advantages[[0, 3]] != 0).all()
    assert metrics["adv/zero_std_frac"] == pytest.approx(0.5)
