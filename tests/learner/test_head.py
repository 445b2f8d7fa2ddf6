"""The fused LM-head log-probs (rlvr.learner.forward.head) against hand-computed numbers and against autograd."""

import math

import pytest
import torch
from torch import nn

from rlvr.cpu.onednn import available
from rlvr.learner.forward.head import FusedLogprobHead, checkpointed_logprobs, fusable, head_logprobs


def test_fused_head_matches_hand_computed_values():
    # one token, vocab 2: logits [0, ln 3] -> p = [1/4, 3/4]
    hidden = torch.tensor([[1.0]], dtype=torch.float64)
    weight = torch.tensor([[0.0], [math.log(3.0)]], dtype=torch.float64)
    chosen, entropy = FusedLogprobHead.apply(hidden, weight, torch.tensor([1]), 1.0, 4, False)
    assert chosen.item() == pytest.approx(math.log(0.75))
    assert entropy.item() == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)))
    # at temperature 2 the logits halve: p = softmax([0, ln 3 / 2]) = [1, sqrt 3] / (1 + sqrt 3)
    chosen, _ = FusedLogprobHead.apply(hidden, weight, torch.tensor([0]), 2.0, 4, False)
    assert chosen.item() == pytest.approx(math.log(1 / (1 + math.sqrt(3.0))))


def test_fused_head_gradient_matches_hand_computed_values():
    # d log p_y / dz = onehot(y) - p; z = w h with h = 1, so d/dw = onehot - p = [-1/4, 1/4] for y = 1
    hidden = torch.tensor([[1.0]], dtype=torch.float64, requires_grad=True)
    weight = torch.tensor([[0.0], [math.log(3.0)]], dtype=torch.float64, requires_grad=True)
    chosen, _ = FusedLogprobHead.apply(hidden, weight, torch.tensor([1]), 1.0, 4, False)
    chosen.sum().backward()
    torch.testing.assert_close(weight.grad, torch.tensor([[-0.25], [0.25]], dtype=torch.float64))
    # d/dh = sum_j (onehot - p)_j w_j = 0.25 ln 3
    assert hidden.grad.item() == pytest.approx(0.25 * math.log(3.0))


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("entropy_grad", [False, True])
@pytest.mark.parametrize("chunk", [1, 4, 64])
def test_fused_head_equals_autograd(temperature, entropy_grad, chunk):
    """Values and gradients (hidden and weight) equal the autograd log-softmax, in float64, with
    uneven chunks; upstream gradients on both the log-probs and the entropies."""
    g = torch.Generator().manual_seed(0)
    head = nn.Linear(8, 50, bias=False).double()
    hidden = torch.randn(11, 8, generator=g, dtype=torch.float64)
    targets = torch.randint(0, 50, (11,), generator=g)
    up_chosen, up_entropy = torch.randn(11, generator=g, dtype=torch.float64), torch.randn(11, generator=g).double()

    def run(fn):
        h = hidden.clone().requires_grad_(True)
        head.weight.grad = None
        chosen, entropy = fn(h)
        loss = (chosen * up_chosen).sum() + ((entropy * up_entropy).sum() if entropy_grad else 0.0)
        loss.backward()
        return chosen.detach(), entropy.detach(), h.grad, head.weight.grad.clone()

    fused = run(lambda h: head_logprobs(head, h, targets, temperature, chunk, entropy_grad))
    plain = run(lambda h: checkpointed_logprobs(head, h, targets, temperature, 0, entropy_grad))
    for a, b in zip(fused, plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_entropy_without_entropy_grad_carries_no_gradient():
    head = nn.Linear(4, 9, bias=False)
    hidden = torch.randn(3, 4, requires_grad=True)
    _, entropy = head_logprobs(head, hidden, torch.tensor([0, 1, 2]), 1.0, 2, entropy_grad=False)
    assert not entropy.requires_grad


def test_only_plain_bias_free_linear_heads_are_fused():
    assert fusable(nn.Linear(4, 9, bias=False))
    assert not fusable(nn.Linear(4, 9, bias=True))
    assert not fusable(nn.Sequential(nn.Linear(4, 9, bias=False)))


@pytest.mark.skipif(not available(), reason="this torch build has no oneDNN")
def test_float32_head_runs_on_onednn_weights_with_the_autograd_numbers(monkeypatch):
    """On CPU in float32 the forward and the backward's recompute go through oneDNN on a weight
    reordered once per call; values and gradients stay those of the autograd log-softmax."""
    import rlvr.learner.forward.head

    calls = []
    real = rlvr.learner.forward.head.onednn_linear
    monkeypatch.setattr(rlvr.learner.forward.head, "onednn_linear", lambda *a: calls.append(1) or real(*a))
    g = torch.Generator().manual_seed(1)
    head = nn.Linear(16, 300, bias=False)
    hidden = torch.randn(37, 16, generator=g)
    targets = torch.randint(0, 300, (37,), generator=g)

    def run(fn):
        h = hidden.clone().requires_grad_(True)
        head.weight.grad = None
        chosen, entropy = fn(h)
        (chosen.sum() + 0.5 * entropy.sum()).backward()
        return chosen.detach(), entropy.detach(), h.grad, head.weight.grad.clone()

    fused = run(lambda h: head_logprobs(head, h, targets, 0.8, 10, entropy_grad=True))
    assert len(calls) == 2 * 4  # 4 chunks of 10 rows: forward and recompute
    plain = run(lambda h: checkpointed_logprobs(head, h, targets, 0.8, 0, entropy_grad=True))
    for a, b in zip(fused, plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_a_bfloat16_head_backpropagates_with_fp32_accumulation():
    """A bf16 model's head used to crash in the backward (fp32 grad buffer += bf16 product)."""
    torch.manual_seed(0)
    hidden = torch.randn(12, 8, dtype=torch.bfloat16, requires_grad=True)
    weight = torch.randn(50, 8, dtype=torch.bfloat16, requires_grad=True)
    targets = torch.randint(0, 50, (12,))
    chosen, _ = FusedLogprobHead.apply(hidden, weight, targets, 1.0, 5, False)
    chosen.sum().backward()
    h64, w64 = hidden.detach().double().requires_grad_(), weight.detach().double().requires_grad_()
    torch.log_softmax(h64 @ w64.t(), dim=-1).gather(1, targets.unsqueeze(1)).sum().backward()
    assert weight.grad.dtype == torch.bfloat16 and hidden.grad.dtype == torch.bfloat16
    torch.testing.assert_close(weight.grad.double(), w64.grad, atol=0.05, rtol=0.05)
    torch.testing.assert_close(hidden.grad.double(), h64.grad, atol=0.05, rtol=0.05)


def test_a_bfloat16_tiny_run_trains(tiny_config, tmp_path):
    from rlvr.trainer import train

    run_dir = train(tiny_config("model.dtype=bfloat16", "train.steps=2", "checkpoint.export_final=false"), tmp_path)
    rows = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert sum('"train/reward"' in row for row in rows) == 2
