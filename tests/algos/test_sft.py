"""Demonstration losses against hand-computed numbers (rlvr.algos.sft)."""

import math

import pytest
import torch

from rlvr.algos.sft import OFF_POLICY_LOSSES, SFT_LOSSES, sft_coefficient


def test_nll_is_minus_the_log_prob_on_trained_tokens():
    logprobs = torch.tensor([[math.log(0.5), math.log(0.25)], [math.log(0.8), 0.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    loss, _ = SFT_LOSSES.bind("nll")(logprobs, mask)
    assert loss.flatten().tolist() == pytest.approx([math.log(2), math.log(4), -math.log(0.8), 0.0])


def test_chord_phi_weighs_each_token_by_p_times_one_minus_p_held_constant():
    p = torch.tensor([[0.5, 0.9]])
    logprobs = p.log().requires_grad_(True)
    mask = torch.ones(1, 2)
    loss, metrics = SFT_LOSSES.bind("chord_phi")(logprobs, mask)
    # 0.5 * 0.5 = 0.25 and 0.9 * 0.1 = 0.09, times -log p
    assert loss.flatten().tolist() == pytest.approx([0.25 * math.log(2), -0.09 * math.log(0.9)])
    assert metrics["sft/chord_weight"] == pytest.approx((0.25 + 0.09) / 2)
    loss.sum().backward()
    assert logprobs.grad.flatten().tolist() == pytest.approx([-0.25, -0.09])  # the weight is not differentiated


def test_luffy_shaping_value_and_gradient():
    """f(p) = p / (p + gamma); d(-f A)/d log p = -A gamma p / (p + gamma)^2 (LUFFY eq. 6)."""
    p, gamma, advantage = 0.2, 0.1, 1.5
    logprobs = torch.tensor([[math.log(p)]], requires_grad=True)
    luffy = OFF_POLICY_LOSSES.bind("luffy", {"gamma": gamma})
    loss, metrics = luffy(logprobs, torch.tensor([[advantage]]), torch.ones(1, 1))
    assert loss.item() == pytest.approx(-advantage * p / (p + gamma))
    loss.sum().backward()
    assert logprobs.grad.item() == pytest.approx(-advantage * gamma * p / (p + gamma) ** 2)
    assert metrics["loss/off_policy_prob"] == pytest.approx(p)


def test_shaping_lifts_rare_tokens_more_than_plain_importance_sampling():
    """At p = 0.01 the shaped gradient (gamma p / (p+gamma)^2 = 0.0826) is 8x plain IS's p = 0.01."""
    logprobs = torch.tensor([[math.log(0.01)]], requires_grad=True)
    shaped, _ = OFF_POLICY_LOSSES.bind("luffy")(logprobs, torch.ones(1, 1), torch.ones(1, 1))
    (g_shaped,) = torch.autograd.grad(shaped.sum(), logprobs)
    plain, _ = OFF_POLICY_LOSSES.bind("importance")(logprobs, torch.ones(1, 1), torch.ones(1, 1))
    (g_plain,) = torch.autograd.grad(plain.sum(), logprobs)
    assert g_plain.item() == pytest.approx(-0.01)
    assert g_shaped.item() == pytest.approx(-0.1 * 0.01 / 0.11**2)


@pytest.mark.parametrize(
    ("schedule", "step", "expected"),
    [
        ("constant", 7, 0.5),
        ("linear", 11, 0.5),  # first step of a stage of 5 that starts after step 10
        ("linear", 13, 0.3),  # halfway: (0.5 + 0.1) / 2
        ("linear", 15, 0.1),
        ("cosine", 11, 0.5),
        ("cosine", 13, 0.3),
        ("cosine", 15, 0.1),
    ],
)
def test_sft_coefficient_schedules(schedule, step, expected):
    value = sft_coefficient(step, coef=0.5, final=0.1, schedule=schedule, start=10, steps=5)
    assert value == pytest.approx(expected)


def test_cosine_decay_at_a_quarter():
    # progress 0.25: final + (coef - final) * (1 + cos(pi/4)) / 2
    value = sft_coefficient(2, coef=1.0, final=0.0, schedule="cosine", start=0, steps=5)
    assert value == pytest.approx((1 + math.cos(math.pi / 4)) / 2)
