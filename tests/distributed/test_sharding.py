"""rlvr.distributed.sharding on 2 Gloo ranks (2 processes, no Ray): each rank holds half of every decoder
layer; the gathered weights, the gathered optimizer state and the clipped gradient norm are the
one-process ones."""

import socket

import pytest
import torch
import torch.multiprocessing as mp

WORLD = 2


def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=33,  # 33: uneven shards
                         num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)  # fmt: skip
    return LlamaForCausalLM(config)


def loss_of(model, rank: int) -> torch.Tensor:
    ids = torch.randint(0, 64, (2, 5), generator=torch.Generator().manual_seed(rank))
    hidden = model.model(input_ids=ids).last_hidden_state
    return (hidden @ model.lm_head.weight.T).logsumexp(-1).sum()


def rank_main(rank: int, port: int, results) -> None:
    from rlvr.distributed.groups import GradientSync
    from rlvr.distributed.sharding import (
        full_optimizer_state,
        gather_into,
        load_optimizer_state,
        shard,
        world_group,
    )  # fmt: skip

    group = world_group("127.0.0.1", port, rank, WORLD, 60, torch.device("cpu"))
    model = tiny_llama()
    full_numel = {n: p.numel() for n, p in model.named_parameters()}
    rows = {n: p.shape[0] for n, p in model.named_parameters()}
    shard(model, torch.device("cpu"))
    local = {n: (p.to_local() if hasattr(p, "to_local") else p).numel() for n, p in model.named_parameters()}
    sync = GradientSync(group, sharded=True)
    loss_of(model, rank).backward()
    params = list(model.parameters())
    sync.gradients(params)  # the replicated embedding and norm; the layers were reduce-scattered
    norm = sync.clip_grad_norm(params, max_norm=0.5)
    grads = {
        n: (p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad).clone()
        for n, p in model.named_parameters()
    }
    optimizer = torch.optim.AdamW(params, lr=0.01, foreach=False)
    optimizer.step()
    state = full_optimizer_state(optimizer)
    fresh = torch.optim.AdamW(params, lr=0.01, foreach=False)
    load_optimizer_state(fresh, state)
    again = full_optimizer_state(fresh)
    gathered = tiny_llama() if rank == 0 else None
    gather_into(model, gathered)  # to rank 0 only
    if rank == 0:
        results.put({
            "full": full_numel, "rows": rows, "local": local, "norm": norm,
            "grads": {n: g.numpy() for n, g in grads.items()},
            "weights": {n: w.detach().numpy() for n, w in gathered.named_parameters()},
            "state": {i: s["exp_avg"].numpy() for i, s in state["state"].items()},
            "again": {i: s["exp_avg"].numpy() for i, s in again["state"].items()},
        })  # fmt: skip
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


@pytest.fixture(scope="module")
def sharded():
    with socket.socket() as s:
        s.bind(("", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=rank_main, args=(r, port, results)) for r in range(WORLD)]
    for p in procs:
        p.start()
    out = results.get(timeout=120)
    for p in procs:
        p.join(timeout=60)
    assert all(p.exitcode == 0 for p in procs)
    return out


def one_process():
    model = tiny_llama()
    loss = sum(loss_of(model, rank) for rank in range(WORLD))
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5).item()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    optimizer.step()
    return model, norm, grads, optimizer


def test_each_rank_holds_half_of_every_layer_and_all_of_the_embedding(sharded):
    for name, n in sharded["full"].items():
        rows = sharded["rows"][name]
        expected = n if not name.startswith("model.layers.") else -(-rows // WORLD) * (n // rows)  # rank 0's chunk
        assert sharded["local"][name] == expected, name


def test_gradients_norm_and_weights_are_the_one_process_ones(sharded):
    model, norm, grads, _ = one_process()
    assert sharded["norm"] == pytest.approx(norm, rel=1e-5)
    assert norm > 0.5  # the clip acted
    for name, g in grads.items():
        torch.testing.assert_close(torch.from_numpy(sharded["grads"][name]), g, rtol=1e-5, atol=1e-6)
    for name, p in model.named_parameters():
        torch.testing.assert_close(torch.from_numpy(sharded["weights"][name]), p.detach(), rtol=1e-5, atol=1e-6)


def test_gathered_optimizer_state_is_the_one_process_format_and_round_trips(sharded):
    *_, optimizer = one_process()
    expected = optimizer.state_dict()["state"]
    assert sharded["state"].keys() == expected.keys()
    for i, s in expected.items():
        torch.testing.assert_close(torch.from_numpy(sharded["state"][i]), s["exp_avg"], rtol=1e-5, atol=1e-7)
        assert (sharded["again"][i] == sharded["state"][i]).all()  # sharded again, gathered again: unchanged
