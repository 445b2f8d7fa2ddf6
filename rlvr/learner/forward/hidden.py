"""The hidden states the update reads: prompts encoded once, completions on top of their KV.

Each distinct prompt runs through the body once ([G, P], left-padded; :func:`encode_prompts`),
and its last hidden state and every layer's keys/values (:class:`PromptStates`) serve all the
rows that continue it. :func:`completion_hidden` then gives, for each completion token, the
hidden state whose next-token logits predict it: packed by default (the rows' real tokens as one
sequence, attention per row; :mod:`rlvr.learner.forward.attention`), or right-padded through transformers' own
cache. The loss, the optimizer step and the micro-batch bookkeeping are in :mod:`rlvr.learner.update`.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from rlvr.errors import TrainingError
from rlvr.hf_compat import cache_from, cache_kwargs, output_cache
from rlvr.learner.forward.attention import (
    Passthrough,
    PromptCapture,
    RowLayout,
    checkpointing,
    masked_gqa,
    packable,
    row_attention,
)
from rlvr.precision import autocast_dtype

if TYPE_CHECKING:
    from rlvr.learner.microbatch import MicroBatch


@dataclass
class PromptStates:
    """What the completions need from their prompts: the last hidden state and every layer's KV."""

    last: torch.Tensor  # [g, H] hidden state at each prompt's last token
    keys: list[torch.Tensor]  # per layer [g, kv_heads, P, head_dim]
    values: list[torch.Tensor]  # per layer [g, kv_heads, P, head_dim]
    mask: torch.Tensor  # [g, P] 1 on real prompt tokens (left-padded)

    def tensors(self) -> list[torch.Tensor]:
        return [self.last, *self.keys, *self.values]

    def detached(self) -> "PromptStates":
        """A copy whose tensors are leaves requiring grad: the completions' backward passes stop
        there and accumulate into ``.grad``; :meth:`backward_from` then runs the prompts' backward once."""
        leaf = lambda t: t.detach().requires_grad_(True)  # noqa: E731
        return PromptStates(leaf(self.last), [leaf(k) for k in self.keys], [leaf(v) for v in self.values], self.mask)

    def backward_from(self, leaves: "PromptStates") -> None:
        """Backpropagate the gradients accumulated in ``leaves`` (see :meth:`detached`) through the prompts."""
        pairs = [
            (t, leaf.grad) for t, leaf in zip(self.tensors(), leaves.tensors(), strict=True) if leaf.grad is not None
        ]
        if pairs and pairs[0][0].requires_grad:
            torch.autograd.backward([t for t, _ in pairs], [g for _, g in pairs])


def encode_prompts(body, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> PromptStates:
    """One body pass over left-padded prompts [g, P]. Under gradient checkpointing the layers drop
    the KV cache, so the keys/values are taken from rlvr's attention (:class:`PromptCapture`); so
    they are under bf16 autocast on CPU, where rlvr's attention computes in fp32."""
    positions = (prompt_mask.cumsum(1) - 1).clamp(min=0)
    # bf16 on CPU: rlvr's attention runs it in fp32 (rlvr.learner.forward.attention.masked_attention)
    cpu_bf16 = prompt_ids.device.type == "cpu" and autocast_dtype(prompt_ids.device) == torch.bfloat16
    if checkpointing(body) or (cpu_bf16 and packable(body)):
        return captured_prompts(body, prompt_ids, prompt_mask, positions)
    with masked_gqa(prompt_ids.device):
        out = body(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=positions, use_cache=True)
    layers = output_cache(out).layers
    return PromptStates(out.last_hidden_state[:, -1], [c.keys for c in layers], [c.values for c in layers], prompt_mask)


def captured_prompts(body, prompt_ids, prompt_mask, positions) -> PromptStates:
    """:func:`encode_prompts` with the keys/values kept by :func:`rlvr.learner.forward.attention.rows_attention`."""
    if not packable(body):
        raise TrainingError("model.gradient_checkpointing: rlvr cannot keep this model's prompt KV; turn it off")
    width = prompt_ids.shape[1]
    real = prompt_mask.bool()
    causal = torch.ones(width, width, dtype=torch.bool, device=prompt_ids.device).tril()
    seen = (causal & real.unsqueeze(1)) | torch.eye(width, dtype=torch.bool, device=prompt_ids.device)
    capture = PromptCapture(seen.unsqueeze(1))  # [g, 1, P, P]
    with row_attention(body):
        out = body(input_ids=prompt_ids, position_ids=positions, use_cache=False, rlvr_prompts=Passthrough(capture))
    layers = body.config.num_hidden_layers
    if len(capture.keys) != layers:
        raise TrainingError("model.gradient_checkpointing: attention ran outside rlvr in some layers; turn it off")
    keys = [capture.keys[i] for i in range(layers)]
    values = [capture.values[i] for i in range(layers)]
    return PromptStates(out.last_hidden_state[:, -1], keys, values, prompt_mask)


def completion_hidden(
    body, prompts: PromptStates, prompt_of, targets, token_mask, packed_sequences: bool = True
) -> torch.Tensor:
    """Hidden states [n, T, H] whose next-token logits predict each completion token [n, T]: the
    prompt's last state for token 0, the completion's own states after it.

    Row i continues prompt ``prompt_of[i]``: the prompt's KV is gathered to the rows (a
    differentiable index, so every row's gradient reaches its prompt) and the completions run on
    top of it. The last completion token is never fed: nothing is predicted from it. With
    ``packed_sequences`` (and a body that allows it, :func:`rlvr.learner.forward.attention.packable`) the
    completions run without padding (:func:`packed_completion_hidden`); else right-padded to the longest row.
    """
    if packed_sequences and packable(body):
        return packed_completion_hidden(body, prompts, prompt_of, targets, token_mask)
    if checkpointing(body):  # the layers would drop the prompts' cache: completions blind to their prompts
        raise TrainingError("model.gradient_checkpointing needs packed completions (train.packed_sequences=true)")
    # index_select, not keys[prompt_of]: its backward is an index_add; advanced indexing's is an
    # accumulating index_put, slower on the CPU (measurements: docs/results.md, "Measurements moved from docstrings")
    first = prompts.last.index_select(0, prompt_of).unsqueeze(1)  # [n, 1, H]
    steps = targets.shape[1]
    if steps == 1:
        return first
    cache = cache_from(
        [k.index_select(0, prompt_of) for k in prompts.keys], [v.index_select(0, prompt_of) for v in prompts.values]
    )
    prompt_mask = prompts.mask[prompt_of]  # [n, P]
    feed = targets[:, :-1]  # [n, T-1]
    with masked_gqa(feed.device):
        rest = body(
            input_ids=feed,
            attention_mask=torch.cat([prompt_mask, token_mask[:, :-1]], dim=1),
            position_ids=prompt_mask.sum(1, keepdim=True) + torch.arange(steps - 1, device=feed.device),
            **cache_kwargs(body, cache),
            use_cache=True,
        ).last_hidden_state  # [n, T-1, H]
    return torch.cat([first, rest], dim=1)


def packed_completion_hidden(body, prompts: PromptStates, prompt_of, targets, token_mask) -> torch.Tensor:
    """:func:`completion_hidden` with the N fed tokens of all rows as one sequence [1, N]: the
    linear layers, norms and MLPs (nearly all the FLOPs) never see padding; attention runs per
    row on the padded grid (:func:`rlvr.learner.forward.attention.rows_attention`), each row on its prompt's
    keys/values and then its own tokens, as in the padded pass.

    Faster than the padded pass, more so with more rows per micro-batch (a token budget,
    ``train.micro_batch_tokens``, keeps such micro-batches bounded); measurements: docs/results.md,
    "Measurements moved from docstrings". Outputs and gradients equal the padded pass's
    (``tests/test_update.py``).
    """
    n, steps = targets.shape
    first = prompts.last.index_select(0, prompt_of)  # [n, H]
    if steps == 1:
        return first.unsqueeze(1)
    width = steps - 1  # fed grid [n, T-1]: row r feeds its first len_r - 1 tokens
    device = targets.device
    fed = torch.arange(width, device=device) < (token_mask.sum(1, keepdim=True) - 1)  # [n, T-1]
    slot = fed.flatten().nonzero().squeeze(1)  # [N]
    prompt_mask = prompts.mask.index_select(0, prompt_of).bool()  # [n, P]
    positions = prompt_mask.sum(1, keepdim=True) + torch.arange(width, device=device)  # [n, T-1]
    causal = torch.ones(width, width, dtype=torch.bool, device=device).tril()  # [T-1, T-1]
    own = causal & fed.unsqueeze(1)  # [n, T-1, T-1]: earlier real tokens of the row
    mask = torch.cat([prompt_mask.unsqueeze(1).expand(n, width, -1), own], dim=2).unsqueeze(1)  # [n, 1, T-1, P+T-1]
    layout = RowLayout(
        slot, n, width, [k.index_select(0, prompt_of) for k in prompts.keys],
        [v.index_select(0, prompt_of) for v in prompts.values], mask,
    )  # fmt: skip
    with row_attention(body):
        states = body(
            input_ids=targets[:, :-1].flatten().index_select(0, slot).unsqueeze(0),
            position_ids=positions.flatten().index_select(0, slot).unsqueeze(0),
            use_cache=False,
            rlvr_rows=Passthrough(layout),
        ).last_hidden_state[0]  # [N, H]
    if len(layout.layers_run) != len(layout.keys):
        raise TrainingError(
            f"packed completions: attention ran through rlvr in {len(layout.layers_run)} of {len(layout.keys)} "
            "layers of this model; set train.packed_sequences=false"
        )
    grid = first.new_zeros((n * steps, first.shape[1]))
    predicts = (slot // width) * steps + slot % width + 1  # the token each fed token's state predicts
    grid = grid.index_copy(0, predicts, states).index_copy(0, torch.arange(n, device=device) * steps, first)
    return grid.view(n, steps, -1)


def predictor_hidden(
    body, batch: "MicroBatch", prompts: PromptStates | None = None, prompt_of=None, packed_sequences: bool = True
) -> torch.Tensor:
    """:func:`completion_hidden` of a micro-batch: over its own prompts, or over ``prompts``
    computed once for the whole step (then ``prompt_of`` [n] indexes them)."""
    if prompts is None:
        prompts, prompt_of = encode_prompts(body, batch.prompt_ids, batch.prompt_mask), batch.prompt_of
    return completion_hidden(body, prompts, prompt_of, batch.targets, batch.token_mask, packed_sequences)
