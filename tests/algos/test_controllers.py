"""The coefficient controllers (adaptive KL, entropy) and DAPO's overlong penalty, by hand."""

import pytest
import torch

from rlvr.algos import adaptive_kl_coef, entropy_coef_update, overlong_penalty, skywork_entropy_coef_update


def test_adaptive_kl_coef_hand_computed():
    step = dict(target=0.1, horizon=1000, batch_size=64)
    # 0.15 / 0.1 - 1 = 0.5, clipped to 0.2: 0.1 * (1 + 0.2 * 64 / 1000) = 0.1 * 1.0128
    assert adaptive_kl_coef(0.1, 0.15, **step) == pytest.approx(0.10128)
    # 0.09 / 0.1 - 1 = -0.1: 0.1 * (1 - 0.1 * 0.064) = 0.1 * 0.9936
    assert adaptive_kl_coef(0.1, 0.09, **step) == pytest.approx(0.09936)
    # 0 / 0.1 - 1 = -1, clipped to -0.2: 0.1 * (1 - 0.0128)
    assert adaptive_kl_coef(0.1, 0.0, **step) == pytest.approx(0.09872)
    assert adaptive_kl_coef(0.1, 0.1, **step) == pytest.approx(0.1)  # on target: unchanged
    with pytest.raises(ValueError, match="target > 0"):
        adaptive_kl_coef(0.1, 0.1, target=0.0, horizon=1000, batch_size=64)


def test_entropy_coef_update_steps_toward_the_target_and_clips():
    # below target: 0.01 + 0.1 * (0.5 - 0.3) = 0.03; above: 0.03 + 0.1 * (0.5 - 0.6) = 0.02
    coef = entropy_coef_update(0.01, 0.3, target=0.5, rate=0.1)
    assert coef == pytest.approx(0.03)
    assert entropy_coef_update(coef, 0.6, target=0.5, rate=0.1) == pytest.approx(0.02)
    # 0.01 + 0.1 * (0.5 - 0.9) = -0.03 -> clipped to min_coef 0; 0.99 + 1 * 0.5 = 1.49 -> max_coef 1
    assert entropy_coef_update(0.01, 0.9, target=0.5, rate=0.1) == 0.0
    assert entropy_coef_update(0.99, 0.0, target=0.5, rate=1.0) == 1.0
    assert entropy_coef_update(0.5, 0.0, target=0.5, rate=1.0, max_coef=0.7) == 0.7


def test_skywork_entropy_control_steps_by_delta_and_applies_the_bonus_only_below_target():
    coef, applied = skywork_entropy_coef_update(0.0, 0.1, target=0.2)  # below: +1e-4, applied
    assert (coef, applied) == (pytest.approx(1e-4), pytest.approx(1e-4))
    coef, applied = skywork_entropy_coef_update(coef, 0.3, target=0.2)  # above: -1e-4, not applied
    assert (coef, applied) == (pytest.approx(0.0), 0.0)
    assert skywork_entropy_coef_update(0.0, 0.3, target=0.2) == (0.0, 0.0)  # floor at min_coef
    assert skywork_entropy_coef_update(5e-3, 0.1, target=0.2) == (5e-3, 5e-3)  # ceiling at max_coef


def test_overlong_penalty_at_the_boundaries():
    # max 20, cache 5: free up to 15; ramp (15 - L) / 5 on (15, 20]; -1 beyond
    lengths = torch.tensor([10, 15, 16, 18, 20, 21])
    penalty = overlong_penalty(lengths, max_tokens=20, cache_tokens=5)
    torch.testing.assert_close(penalty, torch.tensor([0.0, 0.0, -0.2, -0.6, -1.0, -1.0]))
    with pytest.raises(ValueError, match="overlong_cache_tokens"):
        overlong_penalty(lengths, max_tokens=20, cache_tokens=0)
    with pytest.raises(ValueError, match="overlong_cache_tokens"):
        overlong_penalty(lengths, max_tokens=20, cache_tokens=21)


def test_otc_tool_reward_matches_hand_computed_values():
    from rlvr.algos.shaping import otc_tool_reward

    calls = torch.tensor([[0, 1, 2, 3], [0, 2, 1, 0], [1, 2, 0, 4]])
    correct = torch.tensor([[0, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0]])
    got = otc_tool_reward(calls, correct, c=1.0)
    # group 1: n = 1 (fewest calls of a correct answer); f = 2mn/(m+n); r = sin(f pi / 2n)
    # group 2: n = 0; r = 1 at m = 0, else cos(m pi / (2m + 1)); group 3: nothing correct -> 1
    expected = torch.tensor(
        [
            [0.0, 1.0, 0.8660254, 0.7071068],
            [1.0, 0.3090170, 0.5, 1.0],
            [1.0, 1.0, 1.0, 1.0],
        ]
    )
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
