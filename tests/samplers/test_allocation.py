"""XRPO's allocation by hand, and ragged groups through advantages, group rewards and the trainer."""

import math

import pytest
import torch

from rlvr.algos.advantages import ADVANTAGES
from rlvr.rewards import group_sizes
from rlvr.samplers.allocation import ALLOCATIONS, half_width, t_quantile, xrpo_priority
from rlvr.trainer import group_advantages, ragged_rows

NAN = float("nan")


def test_t_quantiles_and_half_width():
    assert t_quantile(1) == 12.706 and t_quantile(3) == 3.182 and t_quantile(30) == 2.042
    assert t_quantile(500) == 1.960
    assert half_width(0.5, 4) == pytest.approx(3.182 * 0.5 / 2)


def test_xrpo_priority_by_hand():
    # s = 0.5, n = 4: h(4) = 3.182 * 0.5 / 2 = 0.7955, h(5) = 2.776 * 0.5 / sqrt(5) = 0.62073
    expected = 0.7955 - 2.776 * 0.5 / math.sqrt(5) + 0.1 * math.sqrt(math.log(32) / 4)
    assert xrpo_priority(0.5, 4, 32, explore=0.1) == pytest.approx(expected)
    assert xrpo_priority(0.0, 4, 32, explore=0.0) == 0.0  # a group that agrees gains nothing


def test_xrpo_first_round_then_uncertain_prompts_get_the_rest():
    xrpo = ALLOCATIONS.bind("xrpo", {"explore": 0.0})
    assert xrpo([[], [], []], 24, total=24) == [4, 4, 4]
    outcomes = [[1, 0, 1, 0], [1, 1, 1, 1], [0, 0, 0, 0]]
    assert xrpo(outcomes, 12, total=24) == [6, 0, 0]  # ceil((24 - 12) / 2 rounds): all to the uncertain one
    spread = ALLOCATIONS.bind("xrpo", {"explore": 1.0})(outcomes, 12, total=24)
    assert sum(spread) == 6 and spread[0] >= spread[1] and spread[1] > 0


def test_xrpo_respects_the_ceiling():
    xrpo = ALLOCATIONS.bind("xrpo", {"explore": 0.0, "max_per_prompt": 6, "rounds": 1})
    assert xrpo([[1, 0, 1, 0], [1, 0, 0, 0]], 8, total=16) == [2, 2]


def test_fixed_is_one_round_of_group_size():
    fixed = ALLOCATIONS.bind("fixed", {})
    assert fixed([[], []], 16, total=16) == [8, 8]
    assert fixed([[1.0] * 8, [0.0] * 8], 0, total=16) == [0, 0]


@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "rloo", "identity"])
def test_per_group_estimators_on_ragged_groups_equal_each_group_alone(name):
    estimator = ADVANTAGES.bind(name, {})
    padded = torch.tensor([[1.0, 0.0, NAN, NAN], [1.0, 0.0, 0.0, 1.0], [0.5, 0.5, 0.5, NAN]])
    advantages, metrics = estimator(padded)
    for row, size in ((0, 2), (1, 4), (2, 3)):
        alone, _ = estimator(padded[row : row + 1, :size])
        torch.testing.assert_close(advantages[row, :size], alone[0])
        assert advantages[row, size:].isnan().all()
    assert metrics["adv/zero_std_frac"] == pytest.approx(1 / 3)


def test_grpo_ragged_by_hand():
    advantages, _ = ADVANTAGES.bind("grpo", {"eps": 1e-4})(torch.tensor([[1.0, 0.0, NAN], [1.0, 0.0, 0.0]]))
    # group 1: mean 0.5, std sqrt(0.5); group 2: mean 1/3, std sqrt(1/3)
    assert advantages[0, 0].item() == pytest.approx(0.5 / (math.sqrt(0.5) + 1e-4), rel=1e-6)
    assert advantages[1, 0].item() == pytest.approx((2 / 3) / (math.sqrt(1 / 3) + 1e-4), rel=1e-6)
    rloo, _ = ADVANTAGES.bind("rloo", {})(torch.tensor([[1.0, 0.0, NAN], [1.0, 0.0, 0.0]]))
    assert rloo[0, 0].item() == pytest.approx(1.0) and rloo[1, 0].item() == pytest.approx(1.0)  # r - mean(others)


def test_reinforce_pp_ragged_uses_the_batch_std_of_real_rows():
    padded = torch.tensor([[1.0, 0.0, NAN], [1.0, 0.0, 0.0]])
    advantages, _ = ADVANTAGES.bind("reinforce_pp", {"eps": 1e-6})(padded)
    centred = torch.tensor([0.5, -0.5, 2 / 3, -1 / 3, -1 / 3], dtype=torch.float64)
    real = advantages[~advantages.isnan()].double()
    torch.testing.assert_close(real, centred / (centred.std() + 1e-6), rtol=1e-5, atol=1e-6)


def test_ragged_rows_and_the_trainer_broadcast():
    values = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0])
    assert ragged_rows(values, [2, 3]).tolist()[0][:2] == [1.0, 0.0]
    assert math.isnan(ragged_rows(values, [2, 3])[0, 2].item())
    estimator = ADVANTAGES.bind("dr_grpo", {})
    per_token, _ = group_advantages(estimator, values, [2, 3], width=3, lengths=[1, 2, 3, 3, 3])
    expected = [0.5, -0.5, 2 / 3, -1 / 3, -1 / 3]
    assert per_token[:, 0].tolist() == pytest.approx(expected)
    assert per_token[0, 1:].tolist() == [0.0, 0.0] and per_token[1, 2].item() == 0.0  # past each length


def test_group_sizes():
    assert group_sizes(6, 3) == [3, 3]
    assert group_sizes(5, [2, 3]) == [2, 3]
    assert group_sizes(5, [2, 2]) is None and group_sizes(5, None) is None
