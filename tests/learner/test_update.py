"""The update's shortcuts equal the plain computation: head only at completion positions,
length bucketing and micro-batching, right padding."""

import pytest
import torch

from rlvr.hf_compat import enable_checkpointing
from rlvr.learner.forward.logprobs import completion_logprobs
from rlvr.learner.microbatch import make_micro_batches
from rlvr.learner.update import LossSettings, update_step
from rlvr.models import tiny_random
from rlvr.types import Completion, Example

EXAMPLE = Example(id="x", prompt=[{"role": "user", "content": "hi"}], answer="0")


def completion(prompt_len: int, length: int, seed: int, advantage_sign: float = 1.0) -> Completion:
    g = torch.Generator().manual_seed(seed)
    prompt = torch.randint(10, 1000, (prompt_len,), generator=g).tolist()
    tokens = torch.randint(10, 1000, (length,), generator=g).tolist()
    return Completion(EXAMPLE, "", prompt, tokens, [-1.0] * length, [1] * length, "length")


@pytest.fixture(scope="module")
def model():
    model, _ = tiny_random(seed=1)
    return model


def reference_logprobs(model, c: Completion) -> torch.Tensor:
    ids = torch.tensor([c.prompt_ids + c.token_ids])
    logits = model(input_ids=ids).logits[0]  # [L, V]
    logp = torch.log_softmax(logits.float(), dim=-1)
    p = len(c.prompt_ids)
    return logp[p - 1 : p - 1 + len(c.token_ids)].gather(1, torch.tensor(c.token_ids).unsqueeze(1)).squeeze(1)


def test_head_only_logprobs_equal_a_full_forward(model):
    rows = [completion(7, 5, 0), completion(3, 9, 1), completion(12, 2, 2)]
    (batch,) = make_micro_batches(rows, per_token(rows, [1.0, 1.0, 1.0]), size=8, pad_id=0)
    logprobs, entropy = completion_logprobs(model, batch, temperature=1.0, with_entropy=True)
    for r, i in enumerate(batch.index.tolist()):
        n = len(rows[i].token_ids)
        torch.testing.assert_close(logprobs[r, :n], reference_logprobs(model, rows[i]), rtol=1e-5, atol=1e-5)
        assert torch.all(logprobs[r, n:] == 0) and torch.all(entropy[r, n:] == 0)
    assert (entropy[batch.mask > 0] > 0).all()


def test_temperature_divides_the_logits(model):
    c = completion(4, 3, 5)
    (batch,) = make_micro_batches([c], per_token([c], [1.0]), size=1, pad_id=0)
    hot, _ = completion_logprobs(model, batch, temperature=0.5)
    ids = torch.tensor([c.prompt_ids + c.token_ids])
    logp = torch.log_softmax(model(input_ids=ids).logits[0] / 0.5, dim=-1)
    expected = logp[3:6].gather(1, torch.tensor(c.token_ids).unsqueeze(1)).squeeze(1)
    torch.testing.assert_close(hot[0], expected, rtol=1e-5, atol=1e-5)


def per_token(rows, advantages):
    width = max(len(c.token_ids) for c in rows)
    return {"advantages": torch.tensor(advantages).unsqueeze(1).expand(-1, width).clone()}


SETTINGS = LossSettings("ppo_clip", "token_mean", temperature=1.0, max_tokens=16)


def gradients_after_update(micro_batch_size: int, rows, advantages):
    model, _ = tiny_random(seed=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: keep the gradients, change nothing
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    settings = SETTINGS
    batches = make_micro_batches(rows, per_token(rows, advantages), size=micro_batch_size, pad_id=0)
    metrics = update_step(model, None, optimizer, scheduler, batches, settings, max_grad_norm=1e9, step=1)
    return metrics, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("aggregation_size", [1, 2, 3])
def test_micro_batching_gives_the_same_loss_and_gradients(aggregation_size):
    rows = [completion(5 + i, 2 + (3 * i) % 7, i) for i in range(6)]
    advantages = [0.5, -1.0, 1.5, -0.2, 0.0, 0.7]
    whole_metrics, whole = gradients_after_update(6, rows, advantages)
    split_metrics, split = gradients_after_update(aggregation_size, rows, advantages)
    assert split_metrics["loss/total"] == pytest.approx(whole_metrics["loss/total"], rel=1e-5)
    assert whole.keys() == split.keys()
    for name in whole:
        torch.testing.assert_close(split[name], whole[name], rtol=1e-4, atol=1e-7)


def mean_entropy(model, batches) -> float:
    with torch.no_grad():
        values = [completion_logprobs(model, b, 1.0, with_entropy=True)[1] for b in batches]
    return sum((e * b.mask).sum().item() for e, b in zip(values, batches, strict=True)) / sum(
        b.mask.sum().item() for b in batches
    )


@pytest.mark.parametrize("coef", [0.0, 0.5])
def test_entropy_bonus_alone_raises_entropy(coef):
    """With zero advantages the policy term has no gradient: only the bonus moves the weights."""
    model, _ = tiny_random(seed=2)
    rows = [completion(4, 5, i) for i in range(4)]
    batches = make_micro_batches(rows, per_token(rows, [0.0] * 4), size=4, pad_id=0)
    for b in batches:  # the rows are random tokens: score them as if sampled from the model itself
        with torch.no_grad():
            b.old_logprobs = completion_logprobs(model, b, 1.0)[0]
    optimizer = torch.optim.SGD(model.parameters(), lr=5.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    before = mean_entropy(model, batches)
    settings = LossSettings("ppo_clip", "token_mean", 1.0, max_tokens=SETTINGS.max_tokens, entropy_coef=coef)
    update_step(model, None, optimizer, scheduler, batches, settings, max_grad_norm=1e9, step=1)
    after = mean_entropy(model, batches)
    if coef == 0.0:
        assert after == pytest.approx(before, abs=1e-6)
    else:
        assert after > before


def grouped_rows(prompts: int = 3, group: int = 4) -> list[Completion]:
    """``prompts`` groups of ``group`` completions sharing a prompt (of different lengths)."""
    rows = []
    for p in range(prompts):
        prompt = completion(4 + 3 * p, 1, 100 + p).prompt_ids
        for k in range(group):
            c = completion(1, 1 + (5 * k + p) % 7, 10 * p + k)
            rows.append(Completion(EXAMPLE, "", prompt, c.token_ids, c.logprobs, c.loss_mask, "length"))
    return rows


def update_gradients(
    rows, advantages, size: int, share: bool, chunk: int = 0, entropy_coef: float = 0.0, packed_sequences: bool = True
):
    model, _ = tiny_random(seed=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    settings = LossSettings(
        "ppo_clip",
        "token_mean",
        1.0,
        max_tokens=SETTINGS.max_tokens,
        entropy_coef=entropy_coef,
        logprob_chunk=chunk,
        shared_prompt=share,
        packed_sequences=packed_sequences,
    )
    batches = make_micro_batches(rows, per_token(rows, advantages), size=size, pad_id=0, shared_prompt=share)
    metrics = update_step(model, None, optimizer, scheduler, batches, settings, max_grad_norm=1e9, step=1)
    return batches, metrics, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("size", [12, 5, 4])  # whole groups, groups split across micro-batches, one group each
def test_shared_prompt_gives_the_unshared_loss_and_gradients(size):
    rows = grouped_rows()
    advantages = [((i * 7) % 5 - 2) / 2 for i in range(len(rows))]
    shared_batches, shared_metrics, shared = update_gradients(rows, advantages, size, share=True)
    plain_batches, plain_metrics, plain = update_gradients(rows, advantages, size, share=False)
    # the prompt really is computed once per micro-batch, and once per row without sharing
    assert sum(b.prompt_ids.shape[0] for b in shared_batches) < len(rows)
    assert sum(b.prompt_ids.shape[0] for b in plain_batches) == len(rows)
    if size == 12:
        assert shared_batches[0].prompt_ids.shape[0] == 3
    assert shared_metrics["loss/total"] == pytest.approx(plain_metrics["loss/total"], rel=1e-5)
    assert shared.keys() == plain.keys()
    for name in plain:
        torch.testing.assert_close(shared[name], plain[name], rtol=1e-4, atol=1e-6)


def test_shared_prompt_logprobs_equal_a_full_forward(model):
    rows = grouped_rows()
    (batch,) = make_micro_batches(rows, per_token(rows, [1.0] * len(rows)), size=64, pad_id=0)
    logprobs, _ = completion_logprobs(model, batch, temperature=1.0)
    for r, i in enumerate(batch.index.tolist()):
        n = len(rows[i].token_ids)
        torch.testing.assert_close(logprobs[r, :n], reference_logprobs(model, rows[i]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("entropy_coef", [0.0, 0.3])
def test_chunked_logprobs_give_the_same_loss_and_gradients(entropy_coef):
    rows = grouped_rows(2, 3)
    advantages = [1.0, -0.5, 0.25, -1.0, 0.5, 0.0]
    _, whole_metrics, whole = update_gradients(rows, advantages, 6, True, chunk=0, entropy_coef=entropy_coef)
    _, chunk_metrics, chunked = update_gradients(rows, advantages, 6, True, chunk=3, entropy_coef=entropy_coef)
    assert chunk_metrics["loss/total"] == pytest.approx(whole_metrics["loss/total"], rel=1e-6)
    assert chunk_metrics["entropy"] == pytest.approx(whole_metrics["entropy"], rel=1e-6)
    for name in whole:
        torch.testing.assert_close(chunked[name], whole[name], rtol=1e-5, atol=1e-7)


def test_chunked_head_keeps_less_memory_for_the_backward_pass(model):
    """Saved-for-backward bytes of the head: O(chunk x vocab) chunked, O(tokens x vocab) whole."""
    from rlvr.learner.forward.head import head_logprobs

    head = model.get_output_embeddings()
    hidden = torch.randn(64, head.in_features, requires_grad=True)
    targets = torch.randint(0, head.out_features, (64,))

    parameters = {p.data_ptr() for p in model.parameters()}

    def saved_bytes(chunk: int) -> int:
        total = 0

        def pack(t):  # what the backward pass keeps alive beyond the parameters themselves
            nonlocal total
            if t.data_ptr() not in parameters:
                total += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            head_logprobs(head, hidden, targets, 1.0, chunk)
        return total

    whole, chunked = saved_bytes(0), saved_bytes(8)
    vocab_row = head.out_features * 4
    assert whole >= 64 * vocab_row  # at least one [tokens, vocab] float32 tensor kept
    assert chunked < 8 * vocab_row  # nothing vocabulary-wide kept beyond one chunk's worth


def test_each_prompt_runs_once_per_optimizer_step(count_encodes):
    """However the rows of a group fall across micro-batches, the prompts' forward runs once, on
    the distinct prompts; without sharing, once per row."""
    encoded = count_encodes
    rows = grouped_rows(prompts=3, group=4)
    distinct_tokens = sum(len(p) for p in {tuple(c.prompt_ids) for c in rows})
    batches, _, _ = update_gradients(rows, [1.0] * len(rows), size=3, share=True)
    assert len(batches) == 4 and encoded == [distinct_tokens]
    encoded.clear()
    update_gradients(rows, [1.0] * len(rows), size=3, share=False)
    assert sum(encoded) == sum(len(c.prompt_ids) for c in rows)


def test_step_prompts_maps_rows_to_distinct_prompts():
    from rlvr.learner.microbatch import step_prompts

    rows = grouped_rows(prompts=2, group=3)
    batches = make_micro_batches(rows, per_token(rows, [1.0] * len(rows)), size=4, pad_id=0)
    ids, mask, rows_prompt = step_prompts(batches)
    assert ids.shape[0] == 2
    for batch, prompt_of in zip(batches, rows_prompt, strict=True):
        for r, i in enumerate(batch.index.tolist()):
            assert ids[prompt_of[r]][mask[prompt_of[r]] > 0].tolist() == rows[i].prompt_ids


def with_tool_output(rows: list[Completion]) -> list[Completion]:
    """Some rows get untrained tokens in the middle (tool output: fed, not trained)."""
    out = []
    for i, c in enumerate(rows):
        mask = list(c.loss_mask)
        if i % 3 == 0 and len(mask) > 3:
            mask[1:3] = [0, 0]
        out.append(Completion(c.example, c.text, c.prompt_ids, c.token_ids, c.logprobs, mask, c.finish_reason))
    return out


@pytest.mark.parametrize(("size", "share"), [(12, True), (5, True), (4, False)])
def test_packed_completions_give_the_padded_loss_and_gradients(size, share):
    rows = with_tool_output(grouped_rows())  # lengths 1 to 7, so rows pad differently in every micro-batch
    advantages = [((i * 7) % 5 - 2) / 2 for i in range(len(rows))]
    _, packed_metrics, packed = update_gradients(rows, advantages, size, share, chunk=4, packed_sequences=True)
    _, padded_metrics, padded = update_gradients(rows, advantages, size, share, chunk=4, packed_sequences=False)
    assert packed_metrics["loss/total"] == pytest.approx(padded_metrics["loss/total"], rel=1e-6)
    assert packed_metrics["entropy"] == pytest.approx(padded_metrics["entropy"], rel=1e-6)
    assert packed.keys() == padded.keys()
    for name in padded:
        torch.testing.assert_close(packed[name], padded[name], rtol=1e-5, atol=1e-7, msg=name)


def test_packed_hidden_states_equal_the_padded_ones_at_every_token(model):
    """The states the head, the reference model and the critic read (predictor_hidden)."""
    from rlvr.learner.forward.hidden import predictor_hidden
    from rlvr.learner.forward.logprobs import body_and_head

    rows = with_tool_output(grouped_rows())
    body = body_and_head(model)[0]
    for batch in make_micro_batches(rows, per_token(rows, [1.0] * len(rows)), size=5, pad_id=0):
        packed = predictor_hidden(body, batch, packed_sequences=True)
        padded = predictor_hidden(body, batch, packed_sequences=False)
        real = batch.token_mask > 0
        assert packed.shape == padded.shape
        torch.testing.assert_close(packed[real], padded[real], rtol=1e-5, atol=1e-6)
        assert (packed[~real] == 0).all()  # nothing computed for padding


def test_packed_completions_feed_only_real_tokens(model):
    """The body sees sum(len - 1) completion tokens packed, n x (T - 1) padded."""
    from rlvr.learner.forward.hidden import predictor_hidden
    from rlvr.learner.forward.logprobs import body_and_head

    body = body_and_head(model)[0]
    fed = []
    hook = body.embed_tokens.register_forward_hook(lambda module, args, out: fed.append(args[0].numel()))
    rows = grouped_rows()
    (batch,) = make_micro_batches(rows, per_token(rows, [1.0] * len(rows)), size=12, pad_id=0)
    prompt_tokens = batch.prompt_ids.numel()
    try:
        with torch.no_grad():
            predictor_hidden(body, batch, packed_sequences=True)
            packed = fed[-1]
            predictor_hidden(body, batch, packed_sequences=False)
            padded = fed[-1]
    finally:
        hook.remove()
    assert fed[0] == fed[2] == prompt_tokens
    assert packed == sum(len(c.token_ids) - 1 for c in rows)
    assert padded == len(rows) * (batch.targets.shape[1] - 1) > packed


def test_packable_models():
    from transformers import LlamaConfig, MistralConfig, Qwen2Config

    from rlvr.learner.forward.attention import packable

    class Body:
        def __init__(self, config):
            self.config = config

    assert packable(Body(LlamaConfig()))
    assert packable(Body(Qwen2Config(use_sliding_window=False)))
    assert not packable(Body(MistralConfig(sliding_window=4096)))  # attention limited to a window
    assert not packable(Body(Qwen2Config(use_sliding_window=True, sliding_window=64, max_window_layers=0)))
    assert not packable(object())


def test_cut_by_budget_hand_computed():
    from rlvr.learner.microbatch import cut_by_budget

    tokens = [3, 5, 2, 9, 4, 1]
    order = [5, 2, 0, 4, 1, 3]  # by length: 1, 2, 3, 4, 5, 9
    assert cut_by_budget(order, tokens, size=4) == [[5, 2, 0, 4], [1, 3]]
    assert cut_by_budget(order, tokens, size=4, max_tokens=6) == [[5, 2, 0], [4], [1], [3]]  # 9 > 6: alone
    assert cut_by_budget(order, tokens, size=2, max_tokens=100) == [[5, 2], [0, 4], [1, 3]]
    assert cut_by_budget([], tokens, size=2, max_tokens=5) == []


def test_token_budget_micro_batches_give_the_same_loss_and_gradients():
    rows = grouped_rows()
    advantages = [((i * 7) % 5 - 2) / 2 for i in range(len(rows))]
    _, rows_metrics, by_rows = update_gradients(rows, advantages, 12, True, chunk=4)
    model, _ = tiny_random(seed=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    settings = LossSettings("ppo_clip", "token_mean", 1.0, max_tokens=SETTINGS.max_tokens, logprob_chunk=4)
    batches = make_micro_batches(rows, per_token(rows, advantages), size=12, pad_id=0, max_tokens=10)
    assert len(batches) > 2 and all(b.token_mask.sum() <= 10 or b.targets.shape[0] == 1 for b in batches)
    metrics = update_step(model, None, optimizer, scheduler, batches, settings, max_grad_norm=1e9, step=1)
    assert metrics["loss/total"] == pytest.approx(rows_metrics["loss/total"], rel=1e-6)
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad, by_rows[name], rtol=1e-5, atol=1e-7, msg=name)


def checkpointed_update(rows, advantages, packed_sequences: bool = True):
    model, _ = tiny_random(seed=1)
    enable_checkpointing(model)  # transformers' layers then drop KV caches in training mode
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    settings = LossSettings(
        "ppo_clip",
        "token_mean",
        1.0,
        max_tokens=SETTINGS.max_tokens,
        logprob_chunk=4,
        packed_sequences=packed_sequences,
    )
    batches = make_micro_batches(rows, per_token(rows, advantages), size=5, pad_id=0)
    metrics = update_step(model, None, optimizer, scheduler, batches, settings, max_grad_norm=1e9, step=1)
    return metrics, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_gradient_checkpointing_gives_the_same_loss_and_gradients():
    rows = with_tool_output(grouped_rows())
    advantages = [((i * 7) % 5 - 2) / 2 for i in range(len(rows))]
    _, plain_metrics, plain = update_gradients(rows, advantages, 5, True, chunk=4)
    metrics, grads = checkpointed_update(rows, advantages)
    assert metrics["loss/total"] == pytest.approx(plain_metrics["loss/total"], rel=1e-6)
    assert grads.keys() == plain.keys()
    for name in plain:
        torch.testing.assert_close(grads[name], plain[name], rtol=1e-5, atol=1e-7, msg=name)


def test_gradient_checkpointing_without_packing_is_refused():
    """transformers' layers would drop the prompts' cache: the completions would not see their prompts."""
    from rlvr.errors import TrainingError

    rows = grouped_rows()
    with pytest.raises(TrainingError, match="packed_sequences"):
        checkpointed_update(rows, [1.0] * len(rows), packed_sequences=False)
