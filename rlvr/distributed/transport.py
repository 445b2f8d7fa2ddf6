"""Weight transports, learner -> rollout workers (``distributed.transport``).

- ``object_store``: the state dict is put in Ray's object store once; every worker reads it from there
  (shared memory on one node, Ray's transfer between nodes) and loads it. The default: nothing to set up.
- ``broadcast``: a torch.distributed Gloo group of the driver (rank 0) and the workers, separate from the
  learner group (:func:`rlvr.distributed.groups.gloo_group`); the tensors go in buckets of
  ``distributed.bucket_mb``, flattened per dtype. Both sides walk ``state_dict()`` in the same order, so
  no layout is sent. On GPUs the same code over an NCCL group is how verl and OpenRLHF sync vLLM.
- colocated (``distributed.rollout_workers: 0``): the engine shares the trainer's module in the driver;
  nothing moves (:class:`rlvr.rollout.fast.FastEngine`).

Every send carries a version (the optimizer steps in the weights); a worker answers every rollout with
the version it holds, and the pool refuses a mismatch.
"""

import time

import ray
import torch

from rlvr.distributed.groups import broadcast, buckets, free_port, gloo_group


def distinct_tensors(model) -> list[torch.Tensor]:
    """``state_dict()``'s tensors in order, each storage once (tied embeddings and LM head travel once)."""
    seen, out = set(), []
    for t in model.state_dict().values():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if key not in seen:
            seen.add(key)
            out.append(t.detach())
    return out


def cpu_state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def state_bytes(state: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in state.values())


class ObjectStoreTransport:
    name = "object_store"

    def __init__(self, timeout_s: float, bucket_mb: float) -> None:
        self.timeout_s = timeout_s

    def send(self, workers: list, model, version: int) -> tuple[float, int]:
        """Every worker loads ``model``'s weights; returns (seconds, bytes)."""
        started = time.perf_counter()
        state = cpu_state(model)
        ref = ray.put(state)
        ray.get([w.load_weights.remote(ref, version) for w in workers], timeout=self.timeout_s)
        return time.perf_counter() - started, state_bytes(state)

    def reset(self, workers: list) -> None:
        """Workers changed (one was replaced): nothing to rebuild."""


class BroadcastTransport:
    name = "broadcast"

    def __init__(self, timeout_s: float, bucket_mb: float) -> None:
        self.timeout_s = timeout_s
        self.bucket_bytes = int(bucket_mb * 2**20)
        self.group = None
        self.members: list = []

    def reset(self, workers: list) -> None:
        """(Re)form the group of the driver and ``workers``: at the first send and after a replacement."""
        from rlvr.distributed.cluster import node_ip

        host, port, world = node_ip(), free_port(), len(workers) + 1
        joined = [w.join_broadcast.remote(host, port, rank, world, self.timeout_s) for rank, w in enumerate(workers, 1)]
        self.group = gloo_group(host, port, 0, world, self.timeout_s)
        ray.get(joined, timeout=self.timeout_s)
        self.members = list(workers)

    def send(self, workers: list, model, version: int) -> tuple[float, int]:
        started = time.perf_counter()
        if self.group is None or self.members != list(workers):
            self.reset(workers)
        tensors = [t.cpu() for t in distinct_tensors(model)]
        receiving = [w.receive_broadcast.remote(version, self.bucket_bytes) for w in workers]
        for bucket in buckets(tensors, self.bucket_bytes):
            broadcast(self.group, torch.cat([tensors[i].reshape(-1) for i in bucket]))
        ray.get(receiving, timeout=self.timeout_s)
        return time.perf_counter() - started, sum(t.numel() * t.element_size() for t in tensors)


def receive_into(group, model, bucket_bytes: int) -> None:
    """A worker's side of :meth:`BroadcastTransport.send`: the same buckets, copied into its own tensors."""
    tensors = distinct_tensors(model)
    with torch.no_grad():
        for bucket in buckets(tensors, bucket_bytes):
            flat = torch.empty(sum(tensors[i].numel() for i in bucket), dtype=tensors[bucket[0]].dtype)
            broadcast(group, flat)
            start = 0
            for i in bucket:
                n = tensors[i].numel()
                tensors[i].copy_(flat[start : start + n].view_as(tensors[i]))
                start += n


TRANSPORTS = {"object_store": ObjectStoreTransport, "broadcast": BroadcastTransport}
