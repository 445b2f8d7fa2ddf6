"""The passes outside the policy update (reference KL, the trainer's old log-probs, critic values,
the critic's own update) encode each distinct prompt once per step and give what per-micro-batch
prompts give."""

import pytest
import torch

from rlvr.learner.critic import ValueModel, critic_update, values_for
from rlvr.learner.forward.logprobs import body_and_head, completion_logprobs, per_row
from rlvr.learner.microbatch import make_micro_batches
from rlvr.learner.passes import reference_kl
from rlvr.models import tiny_random
from tests.learner.test_update import grouped_rows


def batches_of(rows, size: int, share: bool):
    width = max(len(c.token_ids) for c in rows)
    g = torch.Generator().manual_seed(3)
    per_token = {
        "advantages": torch.randn(len(rows), width, generator=g),
        "returns": torch.randn(len(rows), width, generator=g),
        "old_values": torch.randn(len(rows), width, generator=g) * 0.1,
    }
    return make_micro_batches(rows, per_token, size=size, pad_id=0, shared_prompt=share), width


def test_per_row_shares_prompts_and_gives_the_same_logprobs(count_encodes):
    model, _ = tiny_random(seed=1)
    rows = grouped_rows(prompts=3, group=4)
    distinct_tokens = sum(len(p) for p in {tuple(c.prompt_ids) for c in rows})

    def logprobs(mb, prompts, prompt_of):
        return completion_logprobs(model, mb, 1.0, prompts=prompts, prompt_of=prompt_of)[0]

    shared_batches, width = batches_of(rows, size=3, share=True)
    shared = per_row(shared_batches, len(rows), width, torch.device("cpu"), logprobs, body=body_and_head(model)[0])
    assert len(shared_batches) == 4 and count_encodes == [distinct_tokens]
    count_encodes.clear()
    plain_batches, _ = batches_of(rows, size=3, share=False)
    plain = per_row(plain_batches, len(rows), width, torch.device("cpu"), logprobs)
    assert sum(count_encodes) == sum(len(c.prompt_ids) for c in rows)
    assert (shared != 0).sum() == sum(len(c.token_ids) for c in rows)
    torch.testing.assert_close(shared, plain, rtol=1e-5, atol=1e-6)


def test_reference_kl_is_the_same_with_shared_prompts(count_encodes):
    model, _ = tiny_random(seed=2)
    rows = grouped_rows(prompts=2, group=3)
    k3 = lambda rollout, ref: (torch.exp(ref - rollout) - (ref - rollout) - 1, {})  # noqa: E731
    shared_batches, width = batches_of(rows, size=4, share=True)
    shared = reference_kl(model, shared_batches, len(rows), width, k3, 1.0, shared_prompt=True)
    assert len(count_encodes) == 1
    plain_batches, _ = batches_of(rows, size=4, share=False)
    plain = reference_kl(model, plain_batches, len(rows), width, k3, 1.0, shared_prompt=False)
    assert shared.abs().sum() > 0
    torch.testing.assert_close(shared, plain, rtol=1e-5, atol=1e-6)


def critic(seed: int = 4) -> ValueModel:
    model, _ = tiny_random(seed=1)
    value_model = ValueModel(body_and_head(model)[0], model.config.hidden_size)
    with torch.no_grad():  # a zero head (the real start) would give the body no gradient to compare
        value_model.head.weight.copy_(
            torch.randn(value_model.head.weight.shape, generator=torch.Generator().manual_seed(seed))
        )
    return value_model


def test_critic_values_and_update_are_the_same_with_shared_prompts(count_encodes):
    rows = grouped_rows(prompts=3, group=4)
    results = {}
    for share in (True, False):
        count_encodes.clear()
        model = critic()
        batches, width = batches_of(rows, size=5, share=share)
        values = values_for(model, batches, len(rows), width, shared_prompt=share)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # keep the gradients, change nothing
        metrics = critic_update(model, optimizer, batches, value_clip=0.2, max_grad_norm=1e9, shared_prompt=share)
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results[share] = values, metrics, grads, list(count_encodes)
    (values, metrics, grads, encodes), (plain_values, plain_metrics, plain_grads, plain_encodes) = (
        results[True],
        results[False],
    )
    assert len(encodes) == 2 and len(plain_encodes) == 2 * 3  # once per pass, against once per micro-batch
    torch.testing.assert_close(values, plain_values, rtol=1e-5, atol=1e-6)
    assert metrics["critic/loss"] == pytest.approx(plain_metrics["critic/loss"], rel=1e-5)
    assert grads.keys() == plain_grads.keys() and any(g.abs().sum() > 0 for n, g in grads.items() if "layers" in n)
    for name in grads:
        torch.testing.assert_close(grads[name], plain_grads[name], rtol=1e-4, atol=1e-6)
