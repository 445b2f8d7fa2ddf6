"""Demonstrations through the one update (rlvr.learner.update): the SFT loss equals transformers' own
language-modelling loss, it sits beside the RL loss with its own normalizer, micro-batching does not
change it, and LUFFY's off-policy rows get the shaped loss."""

import math

import pytest
import torch

from rlvr.learner.microbatch import make_micro_batches
from rlvr.learner.update import LossSettings, update_step
from rlvr.models import tiny_random
from rlvr.types import Completion, Example

EXAMPLE = Example(id="x", prompt=[{"role": "user", "content": "hi"}], answer="0")


def row(prompt_len: int, length: int, seed: int, mask: list[int] | None = None) -> Completion:
    g = torch.Generator().manual_seed(seed)
    prompt = torch.randint(10, 1000, (prompt_len,), generator=g).tolist()
    tokens = torch.randint(10, 1000, (length,), generator=g).tolist()
    return Completion(EXAMPLE, "", prompt, tokens, [-1.0] * length, mask or [1] * length, "length")


def per_token(rows, advantages, sft=(), off_policy=()):
    width = max(len(c.token_ids) for c in rows)
    out = {"advantages": torch.tensor(advantages, dtype=torch.float).unsqueeze(1).expand(-1, width).clone()}
    out["sft"] = torch.tensor([float(i in sft) for i in range(len(rows))]).unsqueeze(1).expand(-1, width).clone()
    out["off_policy"] = torch.tensor([float(i in off_policy) for i in range(len(rows))]).unsqueeze(1).expand(-1, width)
    return out


def run_update(rows, tokens, size=8, sft_coef=1.0, shared_prompt=True, off_policy_loss="luffy", rl_coef=1.0):
    model, _ = tiny_random(seed=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: keep the gradients, change nothing
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    settings = LossSettings(
        "ppo_clip", "token_mean", temperature=1.0, max_tokens=16, sft_coef=sft_coef, shared_prompt=shared_prompt,
        off_policy_loss=off_policy_loss, rl_coef=rl_coef,
    )  # fmt: skip
    batches = make_micro_batches(rows, tokens, size=size, pad_id=0, shared_prompt=shared_prompt)
    metrics = update_step(model, None, optimizer, scheduler, batches, settings, max_grad_norm=1e9, step=1)
    return metrics, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def hf_loss_and_gradients(rows):
    """transformers' causal-LM loss with labels -100 off the trained tokens: the SFT reference."""
    model, _ = tiny_random(seed=1)
    losses, count = [], 0
    for c in rows:
        ids = torch.tensor([c.prompt_ids + c.token_ids])
        trained = [t if m else -100 for t, m in zip(c.token_ids, c.loss_mask, strict=True)]
        labels = torch.tensor([[-100] * len(c.prompt_ids) + trained])
        logits = model(input_ids=ids).logits.float()
        nll = torch.nn.functional.cross_entropy(logits[0, :-1], labels[0, 1:], ignore_index=-100, reduction="sum")
        losses.append(nll)
        count += sum(c.loss_mask)
    loss = torch.stack(losses).sum() / count
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_sft_loss_equals_transformers_causal_lm_loss():
    rows = [row(6, 5, 0), row(3, 8, 1, mask=[1, 1, 0, 0, 0, 1, 1, 1]), row(9, 2, 2)]  # row 1: tool output masked
    metrics, grads = run_update(rows, per_token(rows, [0.0] * 3, sft=(0, 1, 2)))
    reference, ref_grads = hf_loss_and_gradients(rows)
    assert metrics["loss/total"] == pytest.approx(reference, rel=1e-5)
    assert metrics["sft/nll"] == pytest.approx(reference, rel=1e-5)
    for name, grad in ref_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("size", [1, 2, 3])
def test_demonstrations_beside_rollouts_are_split_invariant(size):
    rows = [row(5 + i, 2 + (3 * i) % 7, i) for i in range(6)]
    tokens = per_token(rows, [0.5, -1.0, 1.5, 0.0, 0.0, 0.0], sft=(3, 4, 5))
    whole_metrics, whole = run_update(rows, tokens, size=6, sft_coef=0.3)
    split_metrics, split = run_update(rows, tokens, size=size, sft_coef=0.3)
    assert split_metrics["loss/total"] == pytest.approx(whole_metrics["loss/total"], rel=1e-5)
    for name in whole:
        torch.testing.assert_close(split[name], whole[name], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("rl_coef", [1.0, 0.75])  # 0.75: CHORD's convex form, (1 - mu) L_RL + mu L_SFT
def test_the_rl_and_sft_losses_have_their_own_normalizers(rl_coef):
    """RL rows' token mean over RL tokens + coef x the demonstrations' token mean, gradients too."""
    rollouts = [row(5, 4, 0), row(4, 6, 1)]
    demos = [row(6, 3, 2), row(3, 7, 3)]
    rl_metrics, rl_grads = run_update(rollouts, per_token(rollouts, [1.0, -0.5]))
    sft_metrics, sft_grads = run_update(demos, per_token(demos, [0.0, 0.0], sft=(0, 1)))
    rows = rollouts + demos
    tokens = per_token(rows, [1.0, -0.5, 0.0, 0.0], sft=(2, 3))
    mixed_metrics, mixed_grads = run_update(rows, tokens, sft_coef=0.25, rl_coef=rl_coef)
    expected = rl_coef * rl_metrics["loss/total"] + 0.25 * sft_metrics["loss/total"]
    assert mixed_metrics["loss/total"] == pytest.approx(expected, rel=1e-5)
    for name in mixed_grads:
        expected_grad = rl_coef * rl_grads[name] + 0.25 * sft_grads[name]
        torch.testing.assert_close(mixed_grads[name], expected_grad, rtol=1e-4, atol=1e-6)


def test_off_policy_rows_get_luffys_shaped_loss():
    """One sampled row (ratio 1 at the rollout's own log-probs) and one demonstration row: the loss is
    the token mean over both rows' tokens of -A ratio and -A p / (p + 0.1)."""
    model, _ = tiny_random(seed=1)
    sampled, demo = row(4, 3, 0), row(4, 2, 1)
    with torch.no_grad():  # score the sampled row as if the model itself had sampled it (ratio 1)
        ids = torch.tensor([sampled.prompt_ids + sampled.token_ids])
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
        own = [logp[3 + t, tok].item() for t, tok in enumerate(sampled.token_ids)]
        ids = torch.tensor([demo.prompt_ids + demo.token_ids])
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
        demo_p = [math.exp(logp[3 + t, tok].item()) for t, tok in enumerate(demo.token_ids)]
    sampled = Completion(EXAMPLE, "", sampled.prompt_ids, sampled.token_ids, own, [1, 1, 1], "length")
    demo = Completion(EXAMPLE, "", demo.prompt_ids, demo.token_ids, [0.0, 0.0], [1, 1], "stop", origin="demo")
    rows = [sampled, demo]
    metrics, _ = run_update(rows, per_token(rows, [-0.5, 2.0], off_policy=(1,)), shared_prompt=False)
    expected = (3 * 0.5 + sum(-2.0 * p / (p + 0.1) for p in demo_p)) / 5
    assert metrics["loss/total"] == pytest.approx(expected, rel=1e-4)
    assert metrics["loss/off_policy_prob"] == pytest.approx(sum(demo_p) / 2, rel=1e-4)
    assert metrics["loss/ratio_mean"] == pytest.approx(1.0, abs=1e-5)  # clip metrics see the sampled row only
