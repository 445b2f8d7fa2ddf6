"""Every algorithm function against hand-computed numbers, plus the invariants."""

import math

import pytest
import torch

from rlvr.algos import ADVANTAGES, AGGREGATIONS, KL_ESTIMATORS, POLICY_LOSSES
from rlvr.errors import ConfigError


def test_grpo_advantage_hand_computed():
    # rewards 1, 0, 0, 1: mean 0.5, unbiased std sqrt((4 * 0.25) / 3) = 0.57735
    advantages, metrics = ADVANTAGES.get("grpo")(torch.tensor([[1.0, 0.0, 0.0, 1.0]]), eps=0.0)
    expected = 0.5 / math.sqrt(1 / 3)
    torch.testing.assert_close(advantages, torch.tensor([[expected, -expected, -expected, expected]]))
    assert metrics["adv/zero_std_frac"] == 0.0


def test_grpo_advantage_with_eps_and_uneven_rewards():
    # rewards 2, 0, 1: mean 1, unbiased std 1, eps 0.5 -> (r - 1) / 1.5
    advantages, _ = ADVANTAGES.get("grpo")(torch.tensor([[2.0, 0.0, 1.0]]), eps=0.5)
    torch.testing.assert_close(advantages, torch.tensor([[2 / 3, -2 / 3, 0.0]]))


def test_grpo_advantages_sum_to_zero_and_agreeing_groups_get_zero():
    rewards = torch.tensor([[0.3, 1.2, 0.0, 0.7], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    advantages, metrics = ADVANTAGES.get("grpo")(rewards, eps=1e-4)
    torch.testing.assert_close(advantages.sum(dim=1), torch.zeros(3), atol=1e-5, rtol=0)
    assert torch.equal(advantages[1:], torch.zeros(2, 4))
    assert metrics["adv/zero_std_frac"] == pytest.approx(2 / 3)


def ppo(logprobs, old, advantages, clip_low=0.2, clip_high=0.2):
    mask = torch.ones_like(logprobs)
    return POLICY_LOSSES.get("ppo_clip")(logprobs, old, advantages, mask, clip_low=clip_low, clip_high=clip_high)


def test_ppo_clip_hand_computed():
    old = torch.zeros(1, 4)
    logprobs = torch.log(torch.tensor([[1.5, 0.5, 1.1, 0.7]]))  # ratios
    advantages = torch.tensor([[1.0, -1.0, 2.0, 1.0]])
    loss, metrics = ppo(logprobs, old, advantages)
    # token 1: min(1.5*1, 1.2*1) = 1.2; token 2: min(0.5*-1, 0.8*-1) = -0.8
    # token 3: min(2.2, 2.2) = 2.2;   token 4: min(0.7, 0.8) = 0.7
    torch.testing.assert_close(loss, -torch.tensor([[1.2, -0.8, 2.2, 0.7]]))
    assert metrics["loss/clip_frac"] == pytest.approx(0.5)


def test_ppo_clip_at_ratio_one_equals_the_unclipped_surrogate_and_its_gradient():
    old = torch.tensor([[-1.0, -2.0, -0.5]])
    logprobs = old.clone().requires_grad_(True)
    advantages = torch.tensor([[0.5, -1.5, 2.0]])
    loss, _ = ppo(logprobs, old, advantages)
    torch.testing.assert_close(loss, -advantages)
    loss.sum().backward()
    torch.testing.assert_close(logprobs.grad, -advantages)  # d(-ratio*A)/dlogp = -A at ratio 1


def test_ppo_clip_gradient_is_exactly_zero_beyond_the_clip_bound():
    old = torch.zeros(1, 2)
    logprobs = torch.log(torch.tensor([[1.5, 0.5]])).requires_grad_(True)
    advantages = torch.tensor([[1.0, -1.0]])  # ratio above 1+eps with A>0, below 1-eps with A<0
    loss, _ = ppo(logprobs, old, advantages)
    loss.sum().backward()
    assert torch.equal(logprobs.grad, torch.zeros(1, 2))


def test_ppo_clip_asymmetric_bounds():
    old = torch.zeros(1, 1)
    logprobs = torch.log(torch.tensor([[1.25]]))
    loss, _ = ppo(logprobs, old, torch.ones(1, 1), clip_low=0.2, clip_high=0.28)
    torch.testing.assert_close(loss, torch.tensor([[-1.25]]))  # inside [0.8, 1.28]: not clipped


def test_kl_estimators_hand_computed():
    logprobs = torch.tensor([[math.log(0.5)]])
    ref = torch.tensor([[math.log(0.25)]])
    log_r = math.log(0.25) - math.log(0.5)  # log(ref/pi) = -log 2
    k1, _ = KL_ESTIMATORS.get("k1")(logprobs, ref)
    k2, _ = KL_ESTIMATORS.get("k2")(logprobs, ref)
    k3, _ = KL_ESTIMATORS.get("k3")(logprobs, ref)
    assert k1.item() == pytest.approx(-log_r)
    assert k2.item() == pytest.approx(0.5 * log_r**2)
    assert k3.item() == pytest.approx(0.5 - 1 - log_r)  # r - 1 - log r with r = 0.5


def test_k2_k3_are_non_negative_and_k1_k3_match_the_closed_form_in_expectation():
    pi = torch.tensor([0.5, 0.3, 0.2])
    ref = torch.tensor([0.2, 0.3, 0.5])
    closed_form = (pi * (pi / ref).log()).sum()
    logp, ref_logp = pi.log().unsqueeze(0), ref.log().unsqueeze(0)  # every outcome, weighted by pi below
    for name in ("k1", "k3"):
        per_outcome, _ = KL_ESTIMATORS.get(name)(logp, ref_logp)
        torch.testing.assert_close((pi * per_outcome[0]).sum(), closed_form)
    for name in ("k2", "k3"):
        values, _ = KL_ESTIMATORS.get(name)(torch.randn(50, 7), torch.randn(50, 7))
        assert (values >= 0).all()
    k1_values, _ = KL_ESTIMATORS.get("k1")(logp, ref_logp)
    assert (k1_values < 0).any()  # k1 is unbiased but not non-negative per sample


def test_aggregations_hand_computed():
    per_token = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    kwargs = dict(batch_tokens=4, batch_sequences=2, max_tokens=5)
    values = {name: AGGREGATIONS.get(name)(per_token, mask, **kwargs)[0].item() for name in AGGREGATIONS.names()}
    assert values["token_mean"] == pytest.approx((1 + 2 + 3 + 4) / 4)  # 10 / 4 tokens = 2.5
    assert values["seq_mean_token_mean"] == pytest.approx((2.0 + 4.0) / 2)  # sequence means 6/3, 4/1
    assert values["seq_mean_token_sum"] == pytest.approx((6.0 + 4.0) / 2)  # sequence sums 6, 4 -> 5
    assert values["token_sum_norm"] == pytest.approx(10.0 / (2 * 5))  # sum 10 / (2 sequences * 5 max tokens)


def test_token_sum_norm_ignores_padding():
    # the same trained tokens under more padding, or in a batch of shorter completions, keep their weight
    fn = AGGREGATIONS.get("token_sum_norm")
    kwargs = dict(batch_tokens=2, batch_sequences=1, max_tokens=8)
    short, _ = fn(torch.ones(1, 2), torch.ones(1, 2), **kwargs)
    padded, _ = fn(torch.ones(1, 6), torch.tensor([[1.0, 1, 0, 0, 0, 0]]), **kwargs)
    assert short.item() == padded.item() == pytest.approx(2 / 8)  # 2 tokens / (1 sequence * 8)


@pytest.mark.parametrize("name", ["token_mean", "seq_mean_token_mean", "seq_mean_token_sum", "token_sum_norm"])
def test_aggregation_over_micro_batches_sums_to_the_full_batch(name):
    torch.manual_seed(0)
    per_token = torch.randn(6, 5)
    mask = (torch.rand(6, 5) > 0.3).float()
    mask[:, 0] = 1
    fn = AGGREGATIONS.get(name)
    kwargs = dict(batch_tokens=mask.sum().item(), batch_sequences=6, max_tokens=5)
    full, _ = fn(per_token, mask, **kwargs)
    parts = sum(fn(per_token[i : i + 2], mask[i : i + 2], **kwargs)[0] for i in range(0, 6, 2))
    torch.testing.assert_close(parts, full)


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown advantage estimator 'grpoo'. Did you mean grpo, .*Valid: "):
        ADVANTAGES.get("grpoo")
