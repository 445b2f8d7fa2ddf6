"""torch.distributed process groups without the global default group, and the learner's collectives.

:func:`gloo_group` builds a Gloo group from a ``TCPStore`` the way verl and OpenRLHF build their
weight-sync groups (vLLM's ``StatelessProcessGroup``): no ``init_process_group``, so one process can hold
a learner group and a separate rollout-broadcast group, and a test can build and drop many.

:class:`GradientSync` is what the learner ranks do together in one optimizer step
(:func:`rlvr.learner.update.update_step` calls it): sum the step's normalizers (RL tokens, RL sequences,
SFT tokens), sum the accumulated gradients in buckets, sum the metrics. Every rank's loss is divided by
the whole step's counts, so the summed gradient equals the one-process gradient of the same rows.

Why not ``DistributedDataParallel``: it reduces gradients from hooks that its wrapper's ``forward`` arms,
and rlvr's update does not run ``model.forward`` (the prompts run once per step, completions packed,
the LM head fused: :mod:`rlvr.learner.update`). The reduction is DDP's with ``no_sync`` on every
micro-batch but the last (one bucketed all-reduce per optimizer step, no overlap with the backward),
done with torch.distributed's own collective. FSDP2 (:mod:`rlvr.distributed.sharding`) hooks each
decoder layer's own forward, which the update does call; there this class sums only the replicated
parameters' gradients, pads the micro-batch counts and clips the mixed norm.
"""

import datetime
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist


def free_port() -> int:
    """A TCP port free on this host now (the store binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


@dataclass
class Group:
    """A process group and the store its ranks met at (the store must live as long as the group)."""

    pg: object  # torch.distributed.ProcessGroupGloo
    store: object  # torch.distributed.TCPStore

    def size(self) -> int:
        return self.pg.size()


def gloo_group(host: str, port: int, rank: int, world: int, timeout_s: float) -> Group:
    """Rank ``rank`` of a ``world``-rank Gloo group rendezvousing at host:port (rank 0 hosts the store).
    Blocks until every rank has joined, at most ``timeout_s``."""
    timeout = datetime.timedelta(seconds=timeout_s)
    store = dist.TCPStore(host, port, world, is_master=rank == 0, timeout=timeout, wait_for_workers=False)
    return Group(dist.ProcessGroupGloo(store, rank, world, timeout), store)


def all_reduce(group: Group, tensor: torch.Tensor, op=dist.ReduceOp.SUM) -> torch.Tensor:
    """In place over the group's ranks (a sum unless ``op`` says otherwise); returns ``tensor``."""
    opts = dist.AllreduceOptions()
    opts.reduceOp = op
    group.pg.allreduce([tensor], opts).wait()
    return tensor


def broadcast(group: Group, tensor: torch.Tensor, root: int = 0) -> torch.Tensor:
    opts = dist.BroadcastOptions()
    opts.rootRank = root
    group.pg.broadcast([tensor], opts).wait()
    return tensor


def buckets(tensors: list[torch.Tensor], bucket_bytes: int) -> list[list[int]]:
    """Indices of ``tensors`` cut into consecutive runs of one dtype and at most ``bucket_bytes``
    (a tensor larger than a bucket is a bucket of its own)."""
    out: list[list[int]] = []
    size, dtype = 0, None
    for i, t in enumerate(tensors):
        nbytes = t.numel() * t.element_size()
        if not out or t.dtype != dtype or size + nbytes > bucket_bytes:
            out.append([])
            size, dtype = 0, t.dtype
        out[-1].append(i)
        size += nbytes
    return out


def flatten(tensors: list[torch.Tensor], bucket: list[int]) -> torch.Tensor:
    """The tensors at ``bucket`` (one dtype) as one flat tensor, in order."""
    return torch.cat([tensors[i].reshape(-1) for i in bucket])


def unflatten_into(tensors: list[torch.Tensor], bucket: list[int], flat: torch.Tensor) -> None:
    """The inverse of :func:`flatten`: ``flat``'s consecutive slices copied into the tensors at ``bucket``."""
    start = 0
    for i in bucket:
        n = tensors[i].numel()
        tensors[i].copy_(flat[start : start + n].view_as(tensors[i]))
        start += n


class GradientSync:
    """The collectives of one learner rank (see the module docstring); ``group`` is a Gloo (or NCCL) group."""

    def __init__(self, group, bucket_mb: float = 64.0, sharded: bool = False) -> None:
        self.group = group
        self.bucket_bytes = int(bucket_mb * 2**20)
        self.sharded = sharded  # FSDP2 (rlvr.distributed.sharding): the layers' gradients are reduced by FSDP

    @property
    def world(self) -> int:
        return self.group.size()

    def totals(self, *counts: float) -> list[float]:
        """The step's counts summed over ranks (float64: exact for any token count)."""
        summed = all_reduce(self.group, torch.tensor(counts, dtype=torch.float64))
        return summed.tolist()

    def gradients(self, params: list[torch.nn.Parameter]) -> None:
        """Sum every parameter's gradient over the ranks, in buckets; a rank whose rows never reached a
        parameter contributes zeros (its ``grad`` is None until then)."""
        from torch.distributed.tensor import DTensor

        params = [p for p in params if not isinstance(p, DTensor)]  # FSDP2's shards: reduce-scattered already
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        grads = [p.grad for p in params]
        for bucket in buckets(grads, self.bucket_bytes):
            unflatten_into(grads, bucket, all_reduce(self.group, flatten(grads, bucket)))

    def names(self, names) -> list[str]:
        """The sorted union of every rank's ``names`` (a rank without off-policy rows records no
        off-policy metric, yet every rank must reduce the same list)."""
        packed = "\n".join(sorted(names)).encode()
        width = all_reduce(self.group, torch.tensor([len(packed)], dtype=torch.int64), dist.ReduceOp.MAX)
        mine = torch.zeros(int(width.item()) + 1, dtype=torch.uint8)
        mine[: len(packed)] = torch.frombuffer(bytearray(packed), dtype=torch.uint8) if packed else mine[:0]
        gathered = [torch.empty_like(mine) for _ in range(self.world)]
        self.group.pg.allgather([gathered], [mine]).wait()
        union = set()
        for t in gathered:
            text = bytes(t.tolist()).rstrip(b"\0").decode()
            union.update(n for n in text.split("\n") if n)
        return sorted(union)

    def metrics(self, sums: dict[str, float], weights: dict[str, float]) -> None:
        """Weighted metric sums summed over ranks, in place, over the union of every rank's names."""
        names = self.names(sums)
        values = torch.tensor([[sums.get(n, 0.0), weights.get(n, 0.0)] for n in names], dtype=torch.float64)
        all_reduce(self.group, values.reshape(-1))
        for n, (s, w) in zip(names, values.tolist(), strict=True):
            sums[n], weights[n] = s, w

    def clip_grad_norm(self, params: list[torch.nn.Parameter], max_norm: float) -> float:
        """The summed gradients' norm, clipped to ``max_norm`` (as ``torch.nn.utils.clip_grad_norm_``)."""
        if self.sharded:
            from rlvr.distributed.sharding import clip_grad_norm

            return clip_grad_norm(params, max_norm, self.group)
        return torch.nn.utils.clip_grad_norm_(params, max_norm).item()

    def padding(self, count: int, templates: list) -> list:
        """FSDP2: every layer's forward and backward is a collective, so every rank runs as many
        micro-batches as the rank with the most; the extra ones are ``templates`` again, which the
        update weights zero. DDP: none (its only collectives come after the backward passes)."""
        if not self.sharded:
            return []
        most = int(all_reduce(self.group, torch.tensor([count], dtype=torch.int64), dist.ReduceOp.MAX).item())
        if most > count and not templates:
            raise RuntimeError("an FSDP2 rank has no rows to pad its micro-batches with")
        return [templates[i % len(templates)] for i in range(most - count)]
