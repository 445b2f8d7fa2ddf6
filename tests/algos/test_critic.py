"""GAE and the clipped value loss: hand-computed, against a loop reference, and their gradients."""

import pytest
import torch

from rlvr.algos import gae, value_loss


def test_gae_hand_computed_with_right_padding():
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 2.0, 9.0]])  # 9.0 sits on padding: ignored
    values = torch.tensor([[0.5, 0.6, 0.7], [1.0, 0.5, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    advantages, returns = gae(rewards, values, mask, gamma=0.9, lam=0.8)
    # row 1, gamma lam = 0.72:  d2 = 1 - 0.7 = 0.3                      A2 = 0.3
    #   d1 = 0.9 * 0.7 - 0.6 = 0.03  A1 = 0.03 + 0.72 * 0.3 = 0.246
    #   d0 = 0.9 * 0.6 - 0.5 = 0.04  A0 = 0.04 + 0.72 * 0.246 = 0.21712
    # row 2 ends at t = 1:  d1 = 2 - 0.5 = 1.5  A1 = 1.5;  d0 = 0.9 * 0.5 - 1 = -0.55  A0 = -0.55 + 0.72 * 1.5 = 0.53
    torch.testing.assert_close(advantages, torch.tensor([[0.21712, 0.246, 0.3], [0.53, 1.5, 0.0]]))
    torch.testing.assert_close(returns, torch.tensor([[0.71712, 0.846, 1.0], [1.53, 2.0, 0.0]]))


def gae_reference(rewards, values, mask, gamma, lam):
    """Plain Python, one sequence at a time over its trained tokens only."""
    out = [[0.0] * len(row) for row in rewards]
    for i, row_mask in enumerate(mask):
        steps = [t for t, m in enumerate(row_mask) if m]
        next_value, next_adv = 0.0, 0.0
        for t in reversed(steps):
            delta = rewards[i][t] + gamma * next_value - values[i][t]
            next_adv = delta + gamma * lam * next_adv
            next_value = values[i][t]
            out[i][t] = next_adv
    return out


def test_gae_equals_a_loop_reference_with_padding_and_masked_holes():
    torch.manual_seed(0)
    rewards, values = torch.randn(5, 7), torch.randn(5, 7)
    mask = (torch.rand(5, 7) > 0.3).float()
    mask[:, 0] = 1.0
    mask[1, 4:] = 0.0  # right padding
    advantages, returns = gae(rewards, values, mask, gamma=0.97, lam=0.9)
    expected = torch.tensor(gae_reference(rewards.tolist(), values.tolist(), mask.tolist(), 0.97, 0.9))
    torch.testing.assert_close(advantages, expected)
    torch.testing.assert_close(returns, (expected + values) * mask)


def test_gae_with_gamma_lam_one_and_a_terminal_reward_is_reward_minus_value():
    torch.manual_seed(1)
    values = torch.randn(2, 4)
    mask = torch.tensor([[1.0, 1, 1, 1], [1, 1, 0, 0]])
    rewards = torch.zeros(2, 4)
    rewards[0, 3], rewards[1, 1] = 1.0, -0.5  # on each sequence's last trained token
    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    outcome = torch.tensor([[1.0], [-0.5]])
    torch.testing.assert_close(advantages, (outcome - values) * mask)
    torch.testing.assert_close(returns, outcome * mask)


def test_value_loss_hand_computed_and_zero_gradient_where_the_clipped_branch_binds():
    values = torch.tensor([[1.1, 2.0, 2.0, 5.0]], requires_grad=True)
    old = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    returns = torch.tensor([[2.0, 0.0, 3.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    loss, metrics = value_loss(values, old, returns, mask, value_clip=0.2)
    # 1: inside the clip: 0.5 * 0.9^2 = 0.405
    # 2: clip(2.0) = 1.2: max((2 - 0)^2, (1.2 - 0)^2) = 4 -> 2.0 (unclipped larger)
    # 3: clip(2.0) = 1.2: max((2 - 3)^2, (1.2 - 3)^2) = 3.24 -> 1.62 (clipped larger); 4: masked
    torch.testing.assert_close(loss, torch.tensor([[0.405, 2.0, 1.62, 0.0]]))
    assert metrics["critic/clip_frac"] == pytest.approx(1 / 3)
    loss.sum().backward()
    # d/dV 0.5 (V - R)^2 = V - R on the unclipped branch: -0.9, 2.0; 0 where the clip binds
    torch.testing.assert_close(values.grad, torch.tensor([[-0.9, 2.0, 0.0, 0.0]]))
