"""FSDP2 for the learner group (``distributed.strategy: fsdp2``): the decoder layers sharded over the ranks.

Layout: every decoder layer is its own ``fully_shard`` unit (its weights, gradients and AdamW state split
in ``1/N`` row blocks; all-gathered for its forward and again for its backward, gradients
reduce-scattered after it), and the decoder body is the root unit with the token embedding and the
final norm left out (``ignored_params``). Those stay replicated, and :class:`rlvr.distributed.groups.GradientSync`
sums their gradients as for DDP, because the LM head ties the embedding (SmolLM2, Qwen2.5-0.5B) and
rlvr's fused head (:mod:`rlvr.learner.forward.head`) reads that weight outside any module's forward,
where an FSDP unit would hold only its shard. In the 135M model the layers are 80% of the weights.

Rank 0 lives in the driver beside the run's full, unsharded policy (``run.model``), which everything
outside the optimizer step reads as in one process: the rollout engine and its weight sync, eval,
the trainer's old log-probs, the checkpoint's weights. After every optimizer step the ranks
gather the new layers to rank 0 into ``run.model`` (:func:`gather_into`) (the role a
colocated vLLM's own copy of the weights plays in verl). So rank 0 holds the full weights once plus its
shard with its gradients and optimizer state; ranks 1..N-1 hold only shards (and the replicated
embedding and norm).

Numbers: FSDP2 sums gradients with ``ReduceOp.SUM`` (``set_gradient_divide_factor(1)``;
``set_force_sum_reduction_for_comms``, since Gloo has no premultiplied sum), every rank's loss is divided
by the whole step's counts, so the step is the one-process step within float summation order.
Every rank must run as many layer forwards and backwards as the others (each is a collective):
:meth:`rlvr.distributed.groups.GradientSync.padding` gives a rank with fewer micro-batches zero-weight
copies of one of its own, and a rank without rows a copy of some other rank's rows, weighted zero; a
micro-batch of one-token rows (which never reach the layers) runs one token through them, weighted zero
(:func:`rlvr.learner.update.join_layer_pass`).

Checkpoints: rank 0 gathers the optimizer state (:func:`full_optimizer_state`) and writes the
one-process format, so a run resumes on any number of ranks (or one process) exactly; the sharded
format of ``torch.distributed.checkpoint`` would save each rank's part without the gather, which matters
only when the full state does not fit one host's memory (not at rlvr's scale; not built).

Limits: CPU (Gloo) tested; on CUDA the same calls run on an NCCL group (:func:`world_group` picks it by
device), not tested here. LoRA and gradient checkpointing are refused with fsdp2 (config check).
"""

import copy
import datetime

import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor, distribute_tensor

from rlvr.distributed.groups import Group


def world_group(host: str, port: int, rank: int, world: int, timeout_s: float, device: torch.device) -> Group:
    """The process's default torch.distributed group (FSDP2's device mesh needs a registered group, which
    the store-only groups of :func:`rlvr.distributed.groups.gloo_group` are not). Gloo on CPU, NCCL on CUDA."""
    timeout = datetime.timedelta(seconds=timeout_s)
    store = dist.TCPStore(host, port, world, is_master=rank == 0, timeout=timeout, wait_for_workers=False)
    backend = "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"  # the counts and metrics are CPU tensors
    dist.init_process_group(backend, store=store, rank=rank, world_size=world, timeout=timeout)
    return Group(dist.group.WORLD, store)


def close_world() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def is_sharded(tensor) -> bool:
    return isinstance(tensor, DTensor)


def shard(model, device: torch.device) -> None:
    """``fully_shard`` each decoder layer of ``model`` and the body as root, in place (module docstring)."""
    from torch.distributed.device_mesh import DeviceMesh

    from rlvr.learner.forward.logprobs import body_and_head

    mesh = DeviceMesh.from_group(dist.group.WORLD, device.type)
    body = body_and_head(model)[0]
    units = [*body.layers, body]
    for layer in body.layers:
        fully_shard(layer, mesh=mesh, reshard_after_forward=True)
    replicated = {p for name, p in body.named_parameters() if not name.startswith("layers.")}
    fully_shard(body, mesh=mesh, reshard_after_forward=True, ignored_params=replicated)
    for unit in units:
        unit.set_gradient_divide_factor(1.0)  # a sum: the losses are already divided by the step's counts
        unit.set_force_sum_reduction_for_comms(True)


def full_optimizer_state(optimizer) -> dict:
    """The optimizer's state in the one-process format (a collective), parameter indices as in
    ``optimizer.state_dict()`` of the same model unsharded."""
    state = optimizer.state_dict()
    whole = lambda v: v.full_tensor() if is_sharded(v) else v  # noqa: E731
    device = optimizer.param_groups[0]["params"][0].device
    one_process = {"fused": device.type in ("cpu", "cuda"), "foreach": None}  # as rlvr.run_setup.make_optimizer
    return {
        "state": {i: {k: whole(v) for k, v in s.items()} for i, s in state["state"].items()},
        "param_groups": [group | one_process for group in state["param_groups"]],
    }


def load_optimizer_state(optimizer, full: dict) -> None:
    """The inverse of :func:`full_optimizer_state` on every rank: each rank keeps its shard of the state."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    sharded = {}
    for i, s in full["state"].items():
        p = params[int(i)]
        sharded[i] = {
            k: distribute_tensor(v, p.device_mesh, p.placements, src_data_rank=None)
            if is_sharded(p) and torch.is_tensor(v) and v.shape == p.shape
            else v
            for k, v in s.items()
        }
    own = [{"fused": g["fused"], "foreach": g["foreach"]} for g in optimizer.param_groups]  # not the unsharded kernel's
    groups = [group | flags for group, flags in zip(full["param_groups"], own, strict=True)]
    optimizer.load_state_dict({"state": sharded, "param_groups": groups})


def sharded_parts(config, model, model_state: dict, optimizer_state: dict, scheduler_state: dict):
    """This rank's (model, optimizer, scheduler): ``model`` loaded with the full ``model_state``, sharded,
    and a new optimizer and schedule over its shards, loaded with the full states."""
    from rlvr.run_setup import make_optimizer, make_scheduler

    model.load_state_dict(model_state)
    shard(model, next(model.parameters()).device)
    optimizer = make_optimizer(config, model)
    scheduler = make_scheduler(config, optimizer)  # before the state: building it resets the groups' lr
    load_optimizer_state(optimizer, optimizer_state)
    scheduler.load_state_dict(scheduler_state)
    return model, optimizer, scheduler


def clip_grad_norm(params: list[torch.nn.Parameter], max_norm: float, group: Group) -> float:
    """``torch.nn.utils.clip_grad_norm_`` over sharded and replicated gradients: the replicated ones are
    equal on every rank (already summed), the shards' squares are summed over the ranks."""
    from rlvr.distributed.groups import all_reduce

    grads = [p.grad for p in params if p.grad is not None]
    shards = sum(
        (g.to_local().double().pow(2).sum() for g in grads if is_sharded(g)), torch.zeros((), dtype=torch.float64)
    )
    whole = sum((g.double().pow(2).sum() for g in grads if not is_sharded(g)), torch.zeros((), dtype=torch.float64))
    total = float((all_reduce(group, shards.reshape(1)).sum() + whole).sqrt())
    coef = min(1.0, max_norm / (total + 1e-6))
    if coef < 1.0:
        for g in grads:
            (g.to_local() if is_sharded(g) else g).mul_(coef)
    return total


def gather_into(model, target=None) -> None:
    """After an optimizer step: every sharded parameter's shards gathered to rank 0 into ``target``'s
    parameter of the same name, one parameter at a time; the replicated ones copied there (a collective:
    the other ranks pass no target and hold one padded shard at a time, where ``DTensor.full_tensor``
    would give every rank the whole model). FSDP2 splits dimension 0 as ``torch.chunk`` does."""
    world, rank = dist.get_world_size(), dist.get_rank()
    targets = dict(target.named_parameters()) if target is not None else {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not is_sharded(p):
                if target is not None:
                    targets[name].copy_(p)  # equal on every rank
                continue
            local = p.to_local()
            rows = -(-p.shape[0] // world)
            padded = local.new_zeros((rows, *p.shape[1:]))
            padded[: local.shape[0]] = local
            parts = [torch.empty_like(padded) for _ in range(world)] if rank == 0 else None
            dist.gather(padded, parts, dst=0)
            if rank == 0:
                targets[name].copy_(torch.cat(parts)[: p.shape[0]])


def replica_of(model):
    """A copy of the run's policy for rank 0 to shard (the run keeps its own, full)."""
    return copy.deepcopy(model)
