"""Policy losses beyond PPO-clip, and the truncated IS weights: hand-computed numbers and gradients."""

import inspect
import math

import pytest
import torch

from rlvr.algos import POLICY_LOSSES, truncated_is_weights


def at_ratios(ratios, old=None):
    """(logprobs with grad, old_logprobs) whose exp-difference is ``ratios``."""
    ratios = torch.tensor(ratios)
    old = torch.zeros_like(ratios) if old is None else torch.tensor(old)
    return (old + ratios.log()).requires_grad_(True), old


def dual(logprobs, old, advantages, c=3.0):
    mask = torch.ones_like(old)
    return POLICY_LOSSES.get("dual_clip")(logprobs, old, advantages, mask, clip_low=0.2, clip_high=0.2, dual_clip_c=c)


def test_dual_clip_hand_computed_and_zero_gradient_where_the_floor_binds():
    logprobs, old = at_ratios([[1.5, 0.5, 4.0, 2.0]])
    advantages = torch.tensor([[1.0, -1.0, -1.0, -1.0]])
    loss, metrics = dual(logprobs, old, advantages)
    # 1: A > 0, min(1.5, 1.2) = 1.2          2: max(min(-0.5, -0.8), -3) = -0.8
    # 3: max(min(-4, -1.2), -3) = -3 (floor)  4: max(min(-2, -1.2), -3) = -2 (unclipped)
    torch.testing.assert_close(loss, torch.tensor([[-1.2, 0.8, 3.0, 2.0]]))
    assert metrics["loss/dual_clip_frac"] == pytest.approx(0.25)
    loss.sum().backward()
    # d(-rho A)/dlogp = -rho A: only token 4 is on the unclipped branch: -2 * -1 = 2
    torch.testing.assert_close(logprobs.grad, torch.tensor([[0.0, 0.0, 0.0, 2.0]]))


def test_dual_clip_is_ppo_clip_for_positive_advantages_and_rejects_c_at_most_1():
    torch.manual_seed(0)
    logprobs, old = torch.randn(3, 5), torch.randn(3, 5)
    advantages, mask = torch.rand(3, 5), torch.ones(3, 5)
    ppo, _ = POLICY_LOSSES.get("ppo_clip")(logprobs, old, advantages, mask, clip_low=0.2, clip_high=0.2)
    torch.testing.assert_close(dual(logprobs, old, advantages)[0], ppo)
    with pytest.raises(ValueError, match="dual_clip_c must be > 1"):
        dual(logprobs, old, advantages, c=1.0)


def gspo(logprobs, old, advantages, mask, clip=0.1):
    return POLICY_LOSSES.get("gspo")(logprobs, old, advantages, mask, clip_low=clip, clip_high=clip)


def test_gspo_hand_computed_sequence_ratios():
    old = torch.zeros(3, 3)
    log_ratio = torch.tensor([[0.1, 0.3, 5.0], [-0.2, 7.0, 7.0], [1e-4, 3e-4, 0.0]])  # padding holds junk
    logprobs = log_ratio.clone().requires_grad_(True)
    mask = torch.tensor([[1.0, 1, 0], [1, 0, 0], [1, 1, 0]])
    advantages = torch.tensor([[1.0] * 3, [-1.0] * 3, [2.0] * 3])
    loss, metrics = gspo(logprobs, old, advantages, mask)
    # s1 = exp((0.1 + 0.3) / 2) = e^0.2 = 1.2214 -> min(1.2214, 1.1) * 1 = 1.1, clipped
    # s2 = exp(-0.2) = 0.8187 -> min(-0.8187, -0.9) = -0.9, clipped
    # s3 = exp((1e-4 + 3e-4) / 2) = e^2e-4 = 1.0002 -> unclipped: 2 * 1.0002 = 2.0004
    s3 = math.exp(2e-4)
    expected = torch.tensor([[-1.1, -1.1, 0.0], [0.9, 0.0, 0.0], [-2 * s3, -2 * s3, 0.0]])
    torch.testing.assert_close(loss, expected)
    assert metrics["loss/clip_frac"] == pytest.approx(2 / 3)
    assert metrics["loss/seq_ratio_mean"] == pytest.approx((math.exp(0.2) + math.exp(-0.2) + s3) / 3)
    per_sequence = loss.sum(dim=1) / mask.sum(dim=1)  # what seq_mean_token_mean sums
    per_sequence.sum().backward()
    # clipped sequences: exactly zero; sequence 3: d(-s A)/dlogp_t = -s A / |y| = -1.0002 per token
    torch.testing.assert_close(logprobs.grad, torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [-s3, -s3, 0.0]]))


def test_gspo_equals_ppo_clip_when_every_sequence_has_one_token():
    torch.manual_seed(0)
    old = torch.randn(6, 4)
    start = old + 0.3 * torch.randn(6, 4)
    advantages = torch.randn(6, 1).expand(6, 4)
    mask = torch.zeros(6, 4)
    mask[torch.arange(6), torch.randint(0, 4, (6,))] = 1.0
    results = []
    for name in ("gspo", "ppo_clip"):
        logprobs = start.clone().requires_grad_(True)
        loss, _ = POLICY_LOSSES.get(name)(logprobs, old, advantages, mask, clip_low=0.2, clip_high=0.28)
        loss.sum().backward()
        results.append((loss, logprobs.grad))
    torch.testing.assert_close(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1])


@pytest.mark.parametrize("name", ["ppo_clip", "dual_clip", "gspo"])
def test_at_ratio_one_clipped_and_unclipped_agree(name):
    old = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -0.7, -1.1]])
    logprobs = old.clone().requires_grad_(True)
    advantages = torch.tensor([[0.5] * 3, [-1.5] * 3])
    mask = torch.ones(2, 3)
    loss, metrics = POLICY_LOSSES.get(name)(logprobs, old, advantages, mask, clip_low=0.2, clip_high=0.2)
    torch.testing.assert_close(loss, -advantages)  # -min(1 * A, clip(1) * A) = -A
    assert metrics["loss/clip_frac"] == 0.0
    (loss.sum(dim=1) / 3).sum().backward()
    # the unclipped gradient: -A / 3 per token (per-token ratio, or the sequence's geometric mean)
    torch.testing.assert_close(logprobs.grad, -advantages / 3)


def test_cispo_gradient_is_the_clipped_weight_times_advantage_even_beyond_the_bound():
    logprobs, old = at_ratios([[1.5, 0.5, 1.0]], old=[[-1.0, -1.0, -1.0]])
    advantages = torch.tensor([[1.0, -1.0, 2.0]])
    mask = torch.ones(1, 3)
    fn = POLICY_LOSSES.get("cispo")
    loss, metrics = fn(logprobs, old, advantages, mask, cispo_clip_low=1.0, cispo_clip_high=0.28)
    # weights clip(rho, 0, 1.28) = 1.28, 0.5, 1.0; loss = -w A logp, logp = -1 + log(rho)
    weights = torch.tensor([[1.28, 0.5, 1.0]])
    torch.testing.assert_close(loss, -weights * advantages * logprobs.detach())
    assert metrics["loss/is_clip_frac"] == pytest.approx(1 / 3)
    loss.sum().backward()
    torch.testing.assert_close(logprobs.grad, torch.tensor([[-1.28, 0.5, -2.0]]))  # -w A: token 1 keeps a gradient
    logprobs.grad = None
    fn(logprobs, old, advantages, mask, cispo_clip_low=0.2, cispo_clip_high=0.28)[0].sum().backward()
    torch.testing.assert_close(logprobs.grad, torch.tensor([[-1.28, 0.8, -2.0]]))  # lower bound 0.8 now binds


def test_reinforce_gradient_is_minus_the_advantage():
    logprobs = torch.tensor([[-0.5, -2.0, -1.0]], requires_grad=True)
    advantages = torch.tensor([[1.0, -0.5, 2.0]])
    loss, _ = POLICY_LOSSES.get("reinforce")(logprobs, torch.zeros(1, 3), advantages, torch.tensor([[1.0, 1.0, 0.0]]))
    torch.testing.assert_close(loss, torch.tensor([[0.5, -1.0, 0.0]]))  # -A logp: -(1)(-0.5), -(-0.5)(-2), masked
    loss.sum().backward()
    torch.testing.assert_close(logprobs.grad, torch.tensor([[-1.0, 0.5, 0.0]]))


HPARAMS = dict(clip_low=0.2, clip_high=0.2)


@pytest.mark.parametrize("name", POLICY_LOSSES.names())
def test_every_loss_is_zero_on_masked_positions(name):
    torch.manual_seed(0)
    logprobs, old, advantages = -torch.rand(4, 5), -torch.rand(4, 5), torch.randn(4, 1).expand(4, 5)
    mask = torch.ones(4, 5)
    mask[:, 3:] = 0
    fn = POLICY_LOSSES.get(name)
    kwargs = {k: v for k, v in HPARAMS.items() if k in inspect.signature(fn).parameters}
    loss, _ = fn(logprobs, old, advantages, mask, **kwargs)
    assert loss.shape == (4, 5)
    assert torch.equal(loss[:, 3:], torch.zeros(4, 2))
    assert (loss[:, :3] != 0).all()


def test_truncated_is_weights_hand_computed():
    rollout = torch.zeros(1, 4)
    trainer = torch.tensor([[math.log(0.5), math.log(3.0), math.log(1.5), 5.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    weights, metrics = truncated_is_weights(trainer, rollout, mask, cap=2.0)
    # min(0.5, 2), min(3, 2), min(1.5, 2); masked -> 0
    torch.testing.assert_close(weights, torch.tensor([[0.5, 2.0, 1.5, 0.0]]))
    assert not weights.requires_grad
    assert metrics["tis/weight_mean"] == pytest.approx(4.0 / 3)
    assert metrics["tis/capped_frac"] == pytest.approx(1 / 3)
