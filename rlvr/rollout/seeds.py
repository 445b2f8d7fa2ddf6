"""Placement-free sampling: each sampled row draws from its own random stream.

A row's seed is a hash of (the call's seed, the row's prefix token ids, how many rows before it in the
call share that prefix). The call's seed (``SamplingParams.seed``) is derived by the driver from (run
seed, step, round, phase), so a row's stream depends only on what it is (which prompt, which of its G
samples, which step), never on where it runs: 1 or 4 rollout workers, any batch size or chunking,
sample the same tokens (up to the rare draw that lands within float rounding of a boundary, since
logits of a batched matmul can differ in the last bit between batch shapes). verl and vLLM do the same
with per-request seeds.

Each row gets ``count`` float64 uniforms up front (one per token it may sample), from a
``torch.Generator`` seeded with its seed: a few microseconds per row per call.

``SamplingParams.seed = None`` keeps torch's global generator (one stream for the whole batch, which
``torch.manual_seed`` reproduces only at the same batch layout).
"""

import hashlib
import struct

import torch

MASK63 = (1 << 63) - 1


def derive_seed(*parts) -> int:
    """A 63-bit seed from any printable parts (ints, strings): stable across processes and machines
    (unlike ``hash``, which Python salts per process)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & MASK63


def prefix_seeds(prefixes: list[list[int]], seed: int) -> list[int]:
    """One seed per prefix: (seed, the prefix's ids, its occurrence among equal prefixes before it)."""
    seen: dict[bytes, int] = {}
    seeds = []
    for prefix in prefixes:
        packed = struct.pack(f"<{len(prefix)}q", *prefix)
        occurrence = seen.get(packed, 0)
        seen[packed] = occurrence + 1
        digest = hashlib.blake2b(packed, digest_size=8, key=struct.pack("<qq", seed, occurrence)).digest()
        seeds.append(int.from_bytes(digest, "little") & MASK63)
    return seeds


def row_seeds(prefixes: list[list[int]], seed: int | None, seeds: list[int] | None) -> list[int] | None:
    """The seeds a call samples with: the caller's ``seeds`` (a rollout pool passes each worker its
    rows' seeds, computed over the whole call), else derived from ``seed``, else None (global RNG)."""
    if seeds is not None:
        if len(seeds) != len(prefixes):
            raise ValueError(f"continue_ids: {len(seeds)} seeds for {len(prefixes)} prefixes")
        return list(seeds)
    return None if seed is None else prefix_seeds(prefixes, seed)


def row_uniforms(seeds: list[int], count: int) -> torch.Tensor:
    """[R, count] float64 uniforms in [0, 1), row r from its own generator seeded with ``seeds[r]``."""
    out = torch.empty((len(seeds), count), dtype=torch.float64)
    generator = torch.Generator()
    for r, seed in enumerate(seeds):
        generator.manual_seed(seed)
        out[r] = torch.rand(count, dtype=torch.float64, generator=generator)
    return out
