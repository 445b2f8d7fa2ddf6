"""The fast engine's attention: a decode step's one query per row as two small batched matmuls.

At a decode step each row has one query token against its cached keys (K of them, a few dozen
to a few hundred). torch's CPU SDPA runs its flash kernel for that, tiled for long queries: at
SmolLM2-135M's 32 rows x 9 heads x K ~ 90 a call costs about 0.25 ms, 30 calls a step, a tenth
or more of a bf16 decode step (docs/results.md, "Mixed precision"). Here the query heads of each
key/value head are grouped ([L, kv_heads, groups, D], grouped-query attention without copying
keys), scores are one batched matmul, the mask and softmax are fp32, and the output is one
more matmul: several times cheaper at these shapes, the same numbers to rounding.

Mixed dtypes are allowed (a bf16 rollout on oneDNN linears runs without autocast: RoPE leaves
queries and keys fp32, values bf16): everything is computed in fp32 and returned in bf16 when
any input is bf16 (what the next bf16 linear takes), else in the query's dtype.

Prompts (more than one query per row) go to SDPA with the same casting. Registered with
transformers' ``AttentionInterface`` as ``rlvr_decode`` and switched on for the duration of a
rollout (:func:`decode_attention_block`); models whose attention transformers cannot switch, or
with sliding windows or soft-capping, keep their own.
"""

from contextlib import nullcontext

import torch

from rlvr.hf_compat import attention_switchable, register_attention, using_attention

DECODE_ATTENTION = "rlvr_decode"


def _out_dtype(query: torch.Tensor, value: torch.Tensor) -> torch.dtype:
    return torch.bfloat16 if torch.bfloat16 in (query.dtype, value.dtype) else query.dtype


def decode_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers attention function: query [B, H, q, D], key/value [B, kv, K, D], mask [B, 1, q, K]
    (bool: True = attend; or additive float) or None; returns ([B, q, H, D], None)."""
    if kwargs.get("sliding_window") or kwargs.get("softcap"):
        raise RuntimeError("rlvr's decode attention does not support sliding-window or soft-capped attention")
    batch, heads, q_len, dim = query.shape
    kv_heads, keys = key.shape[1], key.shape[2]
    out_dtype = _out_dtype(query, value)
    scale = scaling if scaling is not None else dim**-0.5
    query, key, value = query.float(), key.float(), value.float()
    with torch.autocast(query.device.type, enabled=False):
        if q_len != 1:
            if attention_mask is not None:
                mask = attention_mask[:, :, :, :keys]
            else:  # causal, the queries being the last q_len positions
                mask = torch.ones(q_len, keys, dtype=torch.bool, device=query.device).tril(diagonal=keys - q_len)
            out = torch.nn.functional.scaled_dot_product_attention(
                query, key, value, attn_mask=mask, scale=scale, enable_gqa=kv_heads != heads
            )
            return out.transpose(1, 2).to(out_dtype), None
        groups = heads // kv_heads
        grouped = query.reshape(batch, kv_heads, groups, dim)  # query heads h = kv * groups + g, as repeat_kv
        scores = torch.matmul(grouped, key.transpose(-1, -2)).mul_(scale)  # [B, kv, groups, K]
        if attention_mask is not None:
            mask = attention_mask[:, :, -1:, :keys]  # [B, 1, 1, K]
            if mask.dtype == torch.bool:
                scores.masked_fill_(~mask, float("-inf"))
            else:
                scores.add_(mask.float())
        probs = torch.softmax(scores, dim=-1)
        out = torch.matmul(probs, value)  # [B, kv, groups, D]
    return out.view(batch, 1, heads, dim).to(out_dtype), None


register_attention(DECODE_ATTENTION, decode_attention, mask_like="sdpa")  # padding masks as SDPA takes them


def usable(model) -> bool:
    config = getattr(model, "config", None)
    if not attention_switchable(config):
        return False
    if getattr(config, "use_sliding_window", False) or getattr(config, "attn_logit_softcapping", None):
        return False
    types = getattr(config, "layer_types", None)
    return all(t == "full_attention" for t in types) if types else not getattr(config, "sliding_window", None)


def decode_attention_block(model, enabled: bool = True):
    """Within the block ``model``'s attention runs :func:`decode_attention` (where :func:`usable`)."""
    if not enabled or not usable(model):
        return nullcontext(False)
    return using_attention(model.config, DECODE_ATTENTION)
