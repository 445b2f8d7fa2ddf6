"""rlvr's own decode loop: a KV cache, shared prompt prefill, and a batch that shrinks as rows finish.

Same protocol, conventions and distribution as ``rlvr.rollout.hf`` (greedy outputs are identical
to it); faster because:

- **Prefix sharing.** The G rows of a group arrive with identical prefixes. Each distinct prefix
  is prefilled once (left-padded, attention mask, position ids = cumsum(mask) - 1), then the KV
  cache is expanded to its rows (``Cache.reorder_cache``, an ``index_select`` on every layer).
  At 4 prompts x 8 samples that is 4 prefill rows instead of 32.
- **Finished rows leave.** After eos, a stop string or the length bound, a row's cache entries,
  mask and position are dropped, and leading mask columns that only padding uses any more are
  cut off, so each step computes only the rows still running.
- **Weights reordered once per call** (CPU, float32; ``onednn_weights``): every ``nn.Linear``
  runs through oneDNN on a reordered copy (``rlvr.cpu.onednn``) instead of MKL's sgemm, which repacks
  the weight on every call: at a decode step's few rows the repacking, not the arithmetic, sets the
  time, above all on the vocabulary head.
- **bf16 where the hardware has it** (``rollout.precision``, :mod:`rlvr.precision`): the decode
  runs under ``torch.autocast(bfloat16)`` with the linears on bf16 oneDNN-reordered copies of the
  fp32 weights (AMX / AVX512-BF16 kernels), numerics close to the learner's bf16 forward.
- **No [steps, batch, vocab] logits.** The sampled token's log-prob is taken per step from the
  live rows' logits; no logits processors or stopping-criteria machinery runs per step.

Sampling follows ``generate``'s order: logits / T, then top-p as ``TopPLogitsWarper`` does it
(drop the tokens whose ascending cumulative probability is <= 1 - top_p, always keep the top
one), then a draw from what is left: ``draw``, inverse-CDF sampling with one uniform per row and
token, from the row's own generator (``SamplingParams.seed``, :mod:`rlvr.rollout.seeds`: the same
tokens wherever and with whatever batch the row runs) or, without a seed, from torch's
global generator (not the same stream as ``torch.multinomial``, which draws a variate per
vocabulary entry). T = 0 is argmax. The recorded log-prob is log_softmax(logits / T) at the token,
untruncated by top-p (as the HF engine documents), with T = 1 for greedy.

Stop strings are checked per step on the decoded text of the row's last few tokens (a stop
string may end inside a token), confirmed on the whole row's text; the final cut, text and
finish reason come from the shared ``trim_at_stop`` / ``cut_at_stop``, as in the HF engine.

Greedy (4 prompts, 48 tokens) on SmolLM2-135M-Instruct: token ids, text and finish reasons identical
to the HF engine, log-probs within 1e-5.

A decode step costs what ``generate``'s does (same forward; matrix multiplies take most of it); the
saving is the 8x smaller prefill, the cheaper draw, the rows that leave.

Tried and not kept:

- ``torch.compile`` of the decode step (``dynamic=True``): the batch shrinks and the cache grows
  every step, and on a small CPU compiling alone outlasts many rollouts.
- a hand-written decode attention (the query heads grouped per key/value head, two batched matmuls,
  without copying the cache): on the AMX Xeon in bf16 it measured the same as SDPA's CPU flash kernel
  (314-341 against 325-331 generated tok/s at the default step), so the model's own attention stays.
- HF's ``StaticCache``: fixed batch size, so it cannot shrink as rows finish; ``SlabLayer``
  (below) is the preallocated cache that can.
- ``torch.multinomial``: slower than ``draw`` (a variate per vocabulary entry).

Kept for long completions: ``SlabLayer`` (preallocated keys/values). At 48 tokens it measures the
same as ``DynamicLayer``'s ``torch.cat``; at a few hundred tokens it is faster (the cat copies the
whole cache every step).

Measurements (timings, tok/s, profile): docs/results.md, "Measurements moved from docstrings".

Limits: a group larger than ``batch_size`` is split across chunks (each chunk prefills the
prefix again). Cutting padding columns applies to plain ``DynamicLayer`` caches only (others
keep the columns: correct, just slower). Top-p sorts the vocabulary of each live row per step,
as ``generate`` does (slow on a CPU; the first step sorts once per distinct prefix). Stop-string
detection assumes a stop string spans at most 2 x its UTF-8 length + 8 tokens; a longer span
is still cut correctly by ``trim_at_stop``, the row only decodes past it.
"""

from contextlib import nullcontext
from dataclasses import dataclass

import torch

from rlvr.hf_compat import DynamicCache, DynamicLayer, cache_kwargs, output_cache
from rlvr.precision import Precision, autocast, compute_dtype, fp32_head
from rlvr.rollout import Sample, SamplingParams, cut_at_stop, trim_at_stop
from rlvr.rollout.seeds import row_seeds, row_uniforms

STATS = ("prefill_rows", "prefill_tokens", "decode_row_steps", "chunks", "dropped_columns", "onednn_linears")


class SlabLayer(DynamicLayer):
    """A ``DynamicLayer`` whose keys/values are views into storage allocated for the whole decode.

    ``DynamicLayer.update`` appends with ``torch.cat``, copying the layer's whole cache every step;
    here a step writes one column in place. ``keys``/``values`` stay valid [B, kv_heads, K, head_dim]
    views, so everything that reads a DynamicLayer still works.
    """

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, capacity: int) -> None:
        super().__init__()
        batch, heads, length, dim = keys.shape
        self.slab_keys = keys.new_empty((batch, heads, max(capacity, length), dim))
        self.slab_values = values.new_empty((batch, heads, max(capacity, length), values.shape[-1]))
        self.slab_keys[:, :, :length] = keys
        self.slab_values[:, :, :length] = values
        self.length = length
        self.dtype, self.device, self.is_initialized = keys.dtype, keys.device, True
        self._view()

    def _view(self) -> None:
        self.keys = self.slab_keys[:, :, : self.length]
        self.values = self.slab_values[:, :, : self.length]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        end = self.length + key_states.shape[-2]
        if end > self.slab_keys.shape[2]:  # past the planned length (not on the engine's path): grow
            self.slab_keys, self.slab_values = _widen(self.slab_keys, end), _widen(self.slab_values, end)
        self.slab_keys[:, :, self.length : end] = key_states
        self.slab_values[:, :, self.length : end] = value_states
        self.length = end
        self._view()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.slab_keys = self.slab_keys.index_select(0, beam_idx.to(self.device))
        self.slab_values = self.slab_values.index_select(0, beam_idx.to(self.device))
        self._view()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.reorder_cache(indices)

    def drop_leading(self, columns: int) -> None:
        """Forget the first ``columns`` positions (padding no live row attends to)."""
        self.slab_keys, self.slab_values = self.slab_keys[:, :, columns:], self.slab_values[:, :, columns:]
        self.length -= columns
        self._view()


def _widen(slab: torch.Tensor, length: int) -> torch.Tensor:
    """``slab`` [B, H, K, D] with room for ``length`` positions (the new ones uninitialized)."""
    extra = slab.new_empty((*slab.shape[:2], length - slab.shape[2], slab.shape[3]))
    return torch.cat([slab, extra], dim=2)


@dataclass
class _Live:
    """Decode state of the rows of one chunk that are still running (L of them)."""

    cache: DynamicCache  # per layer keys/values [L, kv_heads, K, head_dim]
    mask: torch.Tensor  # [L, K] 1 on real tokens, 0 on left padding (model device)
    positions: torch.Tensor  # [L] position id of the next token to feed (model device)
    rows: list[int]  # [L] chunk row of each live row


def group_prefixes(prefixes: list[list[int]]) -> list[tuple[list[int], list[int]]]:
    """Distinct prefixes in order of first appearance, each with the indices of its rows."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, prefix in enumerate(prefixes):
        groups.setdefault(tuple(prefix), []).append(i)
    return [(list(key), rows) for key, rows in groups.items()]


def plan_chunks(groups: list[tuple[list[int], list[int]]], batch_size: int) -> list[list[tuple[list[int], list[int]]]]:
    """Pack groups into chunks of at most ``batch_size`` rows, a group whole where it fits.

    Next fit: a group that does not fit in the current chunk opens a new one; a group larger
    than ``batch_size`` is split into pieces of ``batch_size`` rows.
    """
    chunks: list[list[tuple[list[int], list[int]]]] = []
    used = batch_size  # rows in the last chunk; full, so the first piece opens a chunk
    for prefix, rows in groups:
        for start in range(0, len(rows), batch_size):
            piece = rows[start : start + batch_size]
            if used + len(piece) > batch_size:
                chunks.append([])
                used = 0
            chunks[-1].append((prefix, piece))
            used += len(piece)
    return chunks


def draw(
    probs: torch.Tensor, index: torch.Tensor | None = None, block: int = 256, u: torch.Tensor | None = None
) -> torch.Tensor:
    """One index per row of ``probs`` [U, V] (non-negative, unnormalized), drawn with probability
    proportional to its entry: [U], or [R] for rows reading ``probs[index[r]]`` (index [R]).

    Two-level inverse-CDF sampling with one uniform per row from torch's global generator: a
    block of ``block`` entries by the float64 cumulative sum of block masses, then an entry by the
    float64 cumulative sum inside that block. ``torch.multinomial`` draws an exponential variate for
    every vocabulary entry, a noticeable share of a rollout on a CPU; this draws one uniform per row
    (measurements: docs/results.md, "Measurements moved from docstrings"). Zero entries (outside
    the top-p nucleus) are never drawn; a block's mass is a float32 sum of its entries (relative
    error ~1e-7). ``u`` [R]: the rows' own uniforms (placement-free seeds, :mod:`rlvr.rollout.seeds`)
    instead of the global generator's.
    """
    vocab = probs.shape[1]
    pad = (-vocab) % block
    blocks = torch.nn.functional.pad(probs, (0, pad)) if pad else probs
    blocks = blocks.view(probs.shape[0], -1, block)  # [U, NB, block]
    mass = blocks.sum(dim=-1).double()  # [U, NB]
    if not bool(torch.isfinite(mass).all() and (mass.sum(dim=-1) > 0).all()):
        raise RuntimeError("sampling: the next-token probabilities are not finite (non-finite logits?)")
    if index is None:
        index = torch.arange(probs.shape[0], device=probs.device)
    mass = mass[index]  # [R, NB]
    cdf = mass.cumsum(dim=-1)
    if u is None:
        u = torch.rand((index.numel(),), dtype=torch.float64, device=probs.device)
    u = u.to(device=probs.device, dtype=torch.float64).view(-1, 1) * cdf[:, -1:]
    b = torch.searchsorted(cdf, u, right=True).clamp_(max=cdf.shape[1] - 1)  # [R, 1] chosen block
    within = ((u - cdf.gather(1, b) + mass.gather(1, b)) / mass.gather(1, b)).clamp_(0.0, 1.0 - 1e-12)
    inner = blocks[index, b.squeeze(1)].double().cumsum(dim=-1)  # [R, block]
    j = torch.searchsorted(inner, within * inner[:, -1:], right=True).clamp_(max=block - 1)
    return (b * block + j).squeeze(1)


def sample_tokens(
    logits: torch.Tensor, sampling: SamplingParams, index: torch.Tensor | None = None, u: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Next token and its log-prob (log_softmax(logits / T), untruncated) for each row, [R] each.

    ``logits`` [U, V]; row r reads ``logits[index[r]]`` (default: row r), so the G rows of a
    group share one softmax and one top-p sort on their first token. ``u`` [R]: each row's uniform
    (:func:`draw`).
    """
    if index is None:
        index = torch.arange(logits.shape[0], device=logits.device)
    greedy = sampling.temperature == 0
    logp = torch.log_softmax(logits.float() / (1.0 if greedy else sampling.temperature), dim=-1)  # [U, V]
    if greedy:
        tokens = torch.argmax(logits, dim=-1)[index]
    else:
        probs = logp.exp()
        if sampling.top_p < 1.0:
            sorted_probs, order = torch.sort(probs, dim=-1, descending=False)
            drop = sorted_probs.cumsum(dim=-1) <= 1 - sampling.top_p
            drop[:, -1] = False  # the most likely token always stays
            probs = probs.masked_fill(drop.scatter(1, order, drop), 0.0)
        tokens = draw(probs, index, u=u)
    return tokens, logp[index, tokens]


def _expand_cache(cache, index: torch.Tensor, capacity: int, preallocate: bool) -> None:
    """Give row r of the cache the states of prefix ``index[r]``; plain dynamic layers become
    ``SlabLayer``s with room for ``capacity`` positions."""
    if preallocate and all(type(layer) is DynamicLayer for layer in cache.layers):
        cache.layers = [
            SlabLayer(layer.keys.index_select(0, index), layer.values.index_select(0, index), capacity)
            for layer in cache.layers
        ]
    else:
        cache.reorder_cache(index)


def cpu_linears(model, enabled: bool, precision: Precision = "fp32", fp32_logits: bool = False):
    """oneDNN-reordered linears (in ``precision``; the LM head in fp32 with ``fp32_logits``) for a
    rollout on the CPU (``rlvr.cpu``, imported only there); elsewhere a block that swaps nothing (yields 0)."""
    if not enabled or next(model.parameters()).device.type != "cpu":
        return nullcontext(0)
    from rlvr.cpu.onednn import onednn_linears

    head = model.get_output_embeddings() if fp32_logits and hasattr(model, "get_output_embeddings") else None
    return onednn_linears(model, enabled, compute_dtype(precision), keep_fp32=(head,) if head is not None else ())


class FastEngine:
    """RolloutEngine with its own KV-cache decode loop; shares the trainer's module (new weights are live).

    ``last_stats`` after each ``continue_ids``: prefill_rows (distinct prefixes prefilled),
    prefill_tokens, decode_row_steps (rows x forward steps actually computed), chunks,
    dropped_columns (left-padding columns cut once the rows that needed them finished),
    onednn_linears (layers running on oneDNN-reordered weights, ``rlvr.cpu.onednn``; 0 off CPU
    or with ``onednn_weights=False``).
    """

    preallocate = True  # False: grow the cache with torch.cat (transformers' DynamicLayer), for comparison

    def __init__(
        self, model, tokenizer, batch_size: int = 64, onednn_weights: bool = True, precision: Precision = "fp32",
        fp32_logits: bool = False,
    ) -> None:  # fmt: skip
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.onednn_weights = onednn_weights
        self.precision = precision  # bf16: the decode runs under autocast (rlvr.precision), bf16 oneDNN linears on CPU
        self.fp32_logits = fp32_logits  # bf16: the LM head still computes in fp32 (rlvr.precision.fp32_head)
        self.last_stats: dict[str, int] = {}

    def update_weights(self, model, version: int | None = None) -> None:
        self.model = model  # the trainer's own module: its weights are live, whatever the version

    @torch.inference_mode()  # no view or version tracking: about 3% off a rollout against no_grad
    def continue_ids(
        self, prefixes: list[list[int]], sampling: SamplingParams, seeds: list[int] | None = None
    ) -> list[Sample]:
        seeds = row_seeds(prefixes, sampling.seed, seeds)
        for i, prefix in enumerate(prefixes):
            if not prefix:
                raise ValueError(f"continue_ids: prefix {i} is empty (nothing to continue)")
        self.last_stats = dict.fromkeys(STATS, 0)
        samples: list[Sample | None] = [None] * len(prefixes)
        was_training = self.model.training
        self.model.eval()
        device = next(self.model.parameters()).device
        try:
            swap = cpu_linears(self.model, self.onednn_weights, self.precision, self.fp32_logits)
            with autocast(device, self.precision), fp32_head(self.model, self.fp32_logits), swap as packed:
                self.last_stats["onednn_linears"] = packed
                for chunk in plan_chunks(group_prefixes(prefixes), self.batch_size):
                    rows = [r for _, piece in chunk for r in piece]
                    chunk_seeds = None if seeds is None else [seeds[r] for r in rows]
                    for r, sample in zip(rows, self._run_chunk(chunk, sampling, chunk_seeds), strict=True):
                        samples[r] = sample
        finally:
            self.model.train(was_training)
        return samples  # type: ignore[return-value]

    def _run_chunk(
        self, chunk: list[tuple[list[int], list[int]]], sampling: SamplingParams, seeds: list[int] | None
    ) -> list[Sample]:
        """Samples for the chunk's rows, in order (prefix by prefix, the rows of each); ``seeds``: the
        rows' own random streams (:mod:`rlvr.rollout.seeds`), else the global generator."""
        greedy = sampling.temperature == 0
        uniforms = None if seeds is None or greedy else row_uniforms(seeds, sampling.max_new_tokens)  # [R, T]
        live, logits = self._prefill([prefix for prefix, _ in chunk])
        expand = [u for u, (_, piece) in enumerate(chunk) for _ in piece]  # [R] distinct prefix of each row
        index = torch.tensor(expand, device=logits.device)
        _expand_cache(live.cache, index, live.mask.shape[1] + sampling.max_new_tokens, self.preallocate)
        live = _Live(live.cache, live.mask[index], live.positions[index], list(range(len(expand))))
        tokens: list[list[int]] = [[] for _ in expand]
        logprobs: list[list[float]] = [[] for _ in expand]
        for step in range(sampling.max_new_tokens):
            u = None if uniforms is None else uniforms[live.rows, step]
            next_ids, next_logp = sample_tokens(logits, sampling, index if step == 0 else None, u)
            keep = []
            for k, (row, tok, lp) in enumerate(zip(live.rows, next_ids.tolist(), next_logp.tolist(), strict=True)):
                tokens[row].append(tok)
                logprobs[row].append(lp)
                if not self._finished(tokens[row], sampling):
                    keep.append(k)
            if not keep or step == sampling.max_new_tokens - 1:
                break
            if len(keep) < len(live.rows):
                live = self._drop_rows(live, keep)
                next_ids = next_ids[keep]
            logits = self._decode_step(live, next_ids)
        return [self._sample(ids, lps, sampling) for ids, lps in zip(tokens, logprobs, strict=True)]

    def _prefill(self, prefixes: list[list[int]]) -> tuple[_Live, torch.Tensor]:
        """Left-padded forward over the distinct prefixes [U, W]: their cache and last logits [U, V]."""
        device = next(self.model.parameters()).device
        width = max(len(p) for p in prefixes)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0  # masked anyway
        input_ids = torch.full((len(prefixes), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(prefixes), width), dtype=torch.long)
        for row, ids in enumerate(prefixes):
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            mask[row, width - len(ids) :] = 1
        input_ids, mask = input_ids.to(device), mask.to(device)
        positions = (mask.cumsum(dim=1) - 1).masked_fill(mask == 0, 1)  # as generate does for left padding
        cache = DynamicCache(config=self.model.config)
        out = self.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            **cache_kwargs(self.model, cache),
            use_cache=True,
            logits_to_keep=1,
        )
        self.last_stats["prefill_rows"] += len(prefixes)
        self.last_stats["prefill_tokens"] += sum(len(p) for p in prefixes)
        self.last_stats["chunks"] += 1
        lengths = mask.sum(dim=1)  # [U] the next token's position
        return _Live(output_cache(out), mask, lengths, list(range(len(prefixes)))), out.logits[:, -1, :]

    def _decode_step(self, live: _Live, next_ids: torch.Tensor) -> torch.Tensor:
        """Feed one token per live row; returns the next logits [L, V] and advances the state."""
        live.mask = torch.cat([live.mask, live.mask.new_ones((live.mask.shape[0], 1))], dim=1)
        out = self.model(
            input_ids=next_ids.unsqueeze(1),
            attention_mask=live.mask,
            position_ids=live.positions.unsqueeze(1),
            **cache_kwargs(self.model, live.cache),
            use_cache=True,
        )
        live.positions = live.positions + 1
        self.last_stats["decode_row_steps"] += len(live.rows)
        return out.logits[:, -1, :]

    def _drop_rows(self, live: _Live, keep: list[int]) -> _Live:
        """Keep the rows at ``keep`` (indices into the live rows) in cache, mask and positions."""
        index = torch.tensor(keep, device=live.mask.device)
        live.cache.reorder_cache(index)
        mask = live.mask[index]
        lead = int((mask.sum(dim=0) == 0).cumprod(dim=0).sum())  # columns only dropped rows used
        if lead and all(type(layer) is SlabLayer for layer in live.cache.layers):
            for layer in live.cache.layers:
                layer.drop_leading(lead)
            mask = mask[:, lead:]
            self.last_stats["dropped_columns"] += lead
        return _Live(live.cache, mask, live.positions[index], [live.rows[k] for k in keep])

    def _finished(self, ids: list[int], sampling: SamplingParams) -> bool:
        """eos, or a stop string in the text of the row's last tokens (confirmed on the whole row)."""
        if ids[-1] == self.tokenizer.eos_token_id:
            return True
        if not sampling.stop:
            return False
        window = 2 * max(len(s.encode()) for s in sampling.stop) + 8
        recent = self.tokenizer.decode(ids[-window:], skip_special_tokens=True)
        if not any(s in recent for s in sampling.stop):
            return False
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        return any(s in text for s in sampling.stop)

    def _sample(self, ids: list[int], logprobs: list[float], sampling: SamplingParams) -> Sample:
        ids, reason = trim_at_stop(self.tokenizer, ids, sampling.stop)
        text = cut_at_stop(self.tokenizer.decode(ids, skip_special_tokens=True), sampling.stop)
        return Sample(ids, logprobs[: len(ids)] if sampling.return_logprobs else [0.0] * len(ids), reason, text)
