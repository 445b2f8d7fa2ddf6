"""Mixed precision (rlvr.precision): what resolves to what, and that bf16 compute keeps fp32 master
weights and stays close to the fp32 numbers it replaces. Runs on any CPU: without bf16 units torch
emulates bf16 (slow, same rounding)."""

import pytest
import torch

from rlvr import precision as P
from rlvr.config import load_config
from rlvr.learner.forward.attention import masked_attention
from rlvr.learner.forward.head import head_logprobs, head_weight_once
from rlvr.learner.microbatch import make_micro_batches
from rlvr.learner.update import LossSettings, update_step
from rlvr.models import tiny_random
from rlvr.rollout import SamplingParams, make_engine
from rlvr.types import Completion, Example

CPU = torch.device("cpu")
EXAMPLE = Example(id="x", prompt=[{"role": "user", "content": "hi"}], answer="0")


@pytest.mark.parametrize(("flags", "expected"), [(("amx_bf16",), "bf16"), (("avx512_bf16",), "bf16"), ((), "fp32")])
def test_auto_is_bf16_exactly_where_the_cpu_has_bf16_units(monkeypatch, flags, expected):
    monkeypatch.setattr(P, "cpu_bf16_flags", lambda: flags)
    assert P.resolve_precision("auto", CPU) == expected
    assert P.resolve_precision("fp32", CPU) == "fp32" and P.resolve_precision("bf16", CPU) == "bf16"


def test_rollout_precision_train_follows_the_learner():
    assert P.resolve_precision("train", CPU, train="bf16") == "bf16"
    assert P.resolve_precision("fp32", CPU, train="bf16") == "fp32"
    with pytest.raises(ValueError, match="learner's resolved precision"):
        P.resolve_precision("train", CPU)


def test_cpuinfo_flags_are_read_from_the_flags_line(monkeypatch, tmp_path):
    fake = tmp_path / "cpuinfo"
    fake.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 amx_tile\n")
    real_path = P.Path
    monkeypatch.setattr(P, "Path", lambda p: real_path(fake) if p == "/proc/cpuinfo" else real_path(p))
    P.cpu_bf16_flags.cache_clear()
    try:
        assert P.cpu_bf16_flags() == ("avx512_bf16",)
    finally:
        P.cpu_bf16_flags.cache_clear()


def test_precision_keys_are_validated():
    assert load_config(None, []).train.precision == "auto"
    assert load_config(None, ["rollout.precision=fp32"]).rollout.precision == "fp32"
    with pytest.raises(Exception, match="train.precision"):
        load_config(None, ["train.precision=fp16"])


def _head_case(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(32, 300, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.randn(300, 32, generator=g) * 0.5)
    hidden = torch.randn(20, 32, generator=g)
    targets = torch.randint(0, 300, (20,), generator=g)
    return head, hidden, targets


def _head_run(head, hidden, targets, precision: str, fp32_logits: bool, chunk: int = 8):
    head.weight.grad = None
    h = hidden.clone().requires_grad_(True)
    with P.autocast(CPU, precision), head_weight_once(head, P.autocast_dtype(CPU)):
        chosen, entropy = head_logprobs(head, h, targets, 1.0, chunk, entropy_grad=True, fp32_logits=fp32_logits)
        with P.no_autocast(CPU):
            (chosen.sum() + 0.3 * entropy.sum()).backward()
    return chosen.detach(), entropy.detach(), h.grad, head.weight.grad.clone()


def test_bf16_head_keeps_fp32_outputs_and_gradients_close_to_fp32():
    head, hidden, targets = _head_case()
    ref = _head_run(head, hidden, targets, "fp32", False)
    bf16 = _head_run(head, hidden, targets, "bf16", False)
    for got, want in zip(bf16, ref, strict=True):
        assert got.dtype == torch.float32  # log-probs, entropies and gradients stay fp32
        assert torch.nn.functional.cosine_similarity(got.flatten(), want.flatten(), dim=0) > 0.995
    assert (bf16[0] - ref[0]).abs().max() < 0.1  # bf16-rounded logits: errors of a few hundredths
    assert (bf16[0] - ref[0]).abs().max() > 0  # the GEMM really ran in bf16


def test_fp32_logits_give_the_fp32_log_probs_under_bf16():
    head, hidden, targets = _head_case(1)
    ref = _head_run(head, hidden, targets, "fp32", False)
    mixed = _head_run(head, hidden, targets, "bf16", True)
    torch.testing.assert_close(mixed[0], ref[0], rtol=1e-6, atol=1e-6)  # the forward is fp32
    torch.testing.assert_close(mixed[1], ref[1], rtol=1e-6, atol=1e-6)
    # the backward's GEMMs are bf16: close, not equal
    assert torch.nn.functional.cosine_similarity(mixed[3].flatten(), ref[3].flatten(), dim=0) > 0.995


def test_bf16_attention_on_cpu_computes_in_fp32():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 5, 8, generator=g) for _ in range(3))
    k, v = k[:, :2], v[:, :2]  # grouped-query: 2 key/value heads for 4 query heads
    mask = torch.ones(2, 1, 5, 5, dtype=torch.bool).tril()
    want = masked_attention(q, k, v, mask, 0.0, None)
    got = masked_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), mask, 0.0, None)
    assert got.dtype == torch.bfloat16
    exact = masked_attention(q.bfloat16().float(), k.bfloat16().float(), v.bfloat16().float(), mask, 0.0, None)
    torch.testing.assert_close(got.float(), exact.bfloat16().float())  # fp32 math on the bf16 inputs, rounded once
    assert (got.float() - want).abs().max() < 0.05


def _rows():
    out = []
    for i in range(4):
        g = torch.Generator().manual_seed(i)
        prompt = torch.randint(10, 1000, (5 + i,), generator=g).tolist()
        tokens = torch.randint(10, 1000, (3 + 2 * i,), generator=g).tolist()
        out.append(Completion(EXAMPLE, "", prompt, tokens, [-7.0] * len(tokens), [1] * len(tokens), "length"))
    return out


def _update(precision: str, lr: float = 0.0):
    model, _ = tiny_random(seed=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    rows = _rows()
    width = max(len(c.token_ids) for c in rows)
    adv = {"advantages": torch.tensor([1.0, -1.0, 0.5, -0.5]).unsqueeze(1).expand(-1, width).clone()}
    batches = make_micro_batches(rows, adv, size=2, pad_id=0)
    settings = LossSettings("ppo_clip", "token_mean", 1.0, max_tokens=16, precision=precision)
    metrics = update_step(model, None, optimizer, scheduler, batches, settings, max_grad_norm=1e9, step=1)
    return model, optimizer, metrics


def test_a_bf16_update_keeps_fp32_master_weights_and_fp32_gradients():
    model, optimizer, metrics = _update("bf16", lr=1e-3)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(p.grad.dtype == torch.float32 for p in model.parameters() if p.grad is not None)
    states = [s for s in optimizer.state.values() if s]
    assert states and all(s["exp_avg"].dtype == torch.float32 for s in states)
    assert torch.isfinite(torch.tensor(metrics["loss/total"]))


def test_a_bf16_update_gives_nearly_the_fp32_gradients():
    fp32, _, m32 = _update("fp32")
    bf16, _, m16 = _update("bf16")
    g32 = torch.cat([p.grad.flatten() for p in fp32.parameters() if p.grad is not None])
    g16 = torch.cat([p.grad.flatten() for p in bf16.parameters() if p.grad is not None])
    assert torch.nn.functional.cosine_similarity(g16, g32, dim=0) > 0.98
    assert abs(m16["grad_norm"] - m32["grad_norm"]) < 0.05 * m32["grad_norm"]
    assert not torch.equal(g16, g32)  # bf16 really computed something different


@pytest.mark.parametrize("engine", ["fast", "hf"])
def test_a_bf16_rollout_samples_close_to_fp32_and_restores_the_model(engine):
    model, tokenizer = tiny_random(seed=2)
    prefixes = [[5, 6, 7, 8], [9, 10, 11]]
    greedy = SamplingParams(max_new_tokens=6, temperature=0.0)
    fp32 = make_engine(engine, model, tokenizer, 8, precision="fp32").continue_ids(prefixes, greedy)
    bf16_engine = make_engine(engine, model, tokenizer, 8, precision="bf16", fp32_logits=True)
    bf16 = bf16_engine.continue_ids(prefixes, greedy)
    for a, b in zip(fp32, bf16, strict=True):
        n = next(
            (i for i, (x, y) in enumerate(zip(a.token_ids, b.token_ids, strict=False)) if x != y), len(a.token_ids)
        )
        assert n >= 1  # the first token agrees (tiny-random's logits are far apart there)
        assert max(abs(x - y) for x, y in zip(a.logprobs[:n], b.logprobs[:n], strict=True)) < 0.1
    if engine == "fast":
        assert bf16_engine.last_stats["onednn_linears"] > 0
    assert not any("forward" in m.__dict__ for m in model.modules())  # every swapped layer restored
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert not torch.is_autocast_enabled("cpu")


def test_pure_bf16_storage_says_what_it_costs(tmp_path):
    from rlvr.trainer import precision_line, setup

    config = load_config(
        None, ["model.name=tiny-random", "model.dtype=bfloat16", "train.steps=1", "log.tensorboard=false"]
    )
    run = setup(config, tmp_path / "run", resume=False)
    try:
        line = precision_line(run)
    finally:
        run.logger.close()
    assert "round" in line and "train.precision=bf16" in line
