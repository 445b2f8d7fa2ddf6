"""Weight transports, learner -> rollout workers (``distributed.transport``).

- ``object_store``: the weights go into Ray's object store once, as one flat buffer per dtype; every
  worker reads them from there (shared memory on one node, Ray's transfer between nodes) and copies
  them into its own. The default: nothing to set up.
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
import warnings

import ray
import torch

from rlvr.distributed.groups import broadcast, buckets, flatten, free_port, gloo_group, unflatten_into


def distinct_tensors(model) -> list[torch.Tensor]:
    """``state_dict()``'s tensors in order, each storage once (tied embeddings and LM head travel once)."""
    seen, out = set(), []
    for t in model.state_dict().values():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if key not in seen:
            seen.add(key)
            out.append(t.detach())
    return out


def flat_buckets(tensors: list[torch.Tensor], bucket_bytes: int) -> list[torch.Tensor]:
    """``tensors`` (on the CPU) concatenated per :func:`buckets`: one flat tensor per bucket."""
    return [flatten(tensors, b) for b in buckets(tensors, bucket_bytes)]


def copy_from_buckets(tensors: list[torch.Tensor], flats: list, bucket_bytes: int) -> None:
    """The inverse of :func:`flat_buckets`, into ``tensors`` in place (``flats``: tensors or arrays)."""
    with torch.no_grad():
        for bucket, flat in zip(buckets(tensors, bucket_bytes), flats, strict=True):
            unflatten_into(tensors, bucket, torch.as_tensor(flat))


class ObjectStoreTransport:
    """The distinct tensors as a few large flat numpy buffers (Ray stores and reads numpy arrays without a
    copy: a worker on the node copies straight from shared memory into its weights); bf16 travels as its
    raw 16 bits (numpy has no bf16)."""

    name = "object_store"

    def __init__(self, timeout_s: float, bucket_mb: float) -> None:
        self.timeout_s = timeout_s
        self.bucket_bytes = 1 << 40  # one buffer per dtype: the object store has no message size to respect
        self.last = None  # the last weights sent (an object ref): what a replacement worker loads

    def send(self, workers: list, model, version: int) -> tuple[float, int]:
        """Every worker loads ``model``'s weights; returns (seconds, bytes)."""
        started = time.perf_counter()
        flats = flat_buckets([t.cpu() for t in distinct_tensors(model)], self.bucket_bytes)
        ref = ray.put([as_numpy(f) for f in flats])
        self.last = ref
        ray.get([w.load_weights.remote(ref, version) for w in workers], timeout=self.timeout_s)
        return time.perf_counter() - started, sum(f.numel() * f.element_size() for f in flats)

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
        for flat in flat_buckets(tensors, self.bucket_bytes):
            broadcast(self.group, flat)
        ray.get(receiving, timeout=self.timeout_s)
        return time.perf_counter() - started, sum(t.numel() * t.element_size() for t in tensors)


def as_numpy(flat: torch.Tensor):
    return flat.view(torch.int16).numpy() if flat.dtype == torch.bfloat16 else flat.numpy()


def load_flat(model, arrays: list, bucket_bytes: int = 1 << 40) -> None:
    """A worker's side of :meth:`ObjectStoreTransport.send`."""
    tensors = distinct_tensors(model)
    flats = []
    with warnings.catch_warnings():  # the arrays are read-only shared memory; they are only read from
        warnings.filterwarnings("ignore", message=".*not writable.*")
        for array, b in zip(arrays, buckets(tensors, bucket_bytes), strict=True):
            flat = torch.from_numpy(array)
            flats.append(flat.view(torch.bfloat16) if tensors[b[0]].dtype == torch.bfloat16 else flat)
        copy_from_buckets(tensors, flats, bucket_bytes)


def receive_into(group, model, bucket_bytes: int) -> None:
    """A worker's side of :meth:`BroadcastTransport.send`: the same buckets, copied into its own tensors."""
    tensors = distinct_tensors(model)
    with torch.no_grad():
        for bucket in buckets(tensors, bucket_bytes):
            flat = torch.empty(sum(tensors[i].numel() for i in bucket), dtype=tensors[bucket[0]].dtype)
            unflatten_into(tensors, bucket, broadcast(group, flat))


TRANSPORTS = {"object_store": ObjectStoreTransport, "broadcast": BroadcastTransport}
