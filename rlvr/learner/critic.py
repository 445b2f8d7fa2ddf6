"""A learned value model for PPO with GAE (``algo.advantage: gae``, ``critic.model``).

The critic is a transformer body with a scalar head, trained by its own optimizer on PPO's
clipped value loss. V(s_t) is read at the same positions whose logits predict completion
token t (the state before emitting it). The outcome reward sits on the last completion token;
with ``algo.kl_in_reward`` each token also carries -kl_coef x KL_t (the classic RLHF form).
"""

import torch
from torch import nn

from rlvr.algos.value import value_loss
from rlvr.learner.forward.attention import through_recompute
from rlvr.learner.forward.hidden import PromptStates, predictor_hidden
from rlvr.learner.forward.logprobs import per_row, trained_prompts_of_step
from rlvr.learner.microbatch import MicroBatch
from rlvr.models import load_model


class ValueModel(nn.Module):
    def __init__(self, body: nn.Module, hidden_size: int, packed_sequences: bool = True) -> None:
        super().__init__()
        self.body = body
        self.packed_sequences = (
            packed_sequences  # completions without padding (rlvr.learner.forward.hidden.completion_hidden)
        )
        self.head = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.head.weight)  # start at V = 0: early advantages are the raw returns
        nn.init.zeros_(self.head.bias)

    def forward(self, batch: MicroBatch, prompts: PromptStates | None = None, prompt_of=None) -> torch.Tensor:
        """V [n, T]; ``prompts``/``prompt_of`` as in :func:`rlvr.learner.forward.hidden.predictor_hidden`."""
        # [n, T, H]: the state before each token
        hidden = predictor_hidden(self.body, batch, prompts, prompt_of, self.packed_sequences)
        return self.head(hidden.float()).squeeze(-1) * batch.mask  # [n, T]


def build_critic(
    name: str, policy_name: str, dtype: str, seed: int, device: torch.device, packed_sequences: bool = True
) -> ValueModel:
    """``name`` "policy" starts the critic's body from the policy's starting weights."""
    model, _ = load_model(policy_name if name == "policy" else name, dtype, seed=seed)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return ValueModel(base.get_decoder(), base.config.hidden_size, packed_sequences).to(device)


def values_for(
    critic: ValueModel, micro_batches: list[MicroBatch], count: int, width: int, shared_prompt: bool = True
) -> torch.Tensor:
    """V for every completion token, rows in the original completion order: [count, width]; with
    ``shared_prompt`` each distinct prompt runs once for the step."""
    body = critic.body if shared_prompt else None
    return per_row(micro_batches, count, width, next(critic.parameters()).device, critic, body=body)


def token_rewards(rewards: list[float], lengths: list[int], width: int, kl: torch.Tensor | None, kl_coef: float):
    """[N, width]: each outcome reward on its completion's last token, minus kl_coef x KL_t if given."""
    out = torch.zeros(len(rewards), width)
    for i, (reward, length) in enumerate(zip(rewards, lengths, strict=True)):
        if length:
            out[i, length - 1] = reward
    if kl is not None:
        out = out - kl_coef * kl[:, :width]
    return out


def critic_update(
    critic: ValueModel,
    optimizer,
    micro_batches: list[MicroBatch],
    *,
    value_clip: float,
    max_grad_norm: float,
    shared_prompt: bool = True,
) -> dict[str, float]:
    """One optimizer step on the clipped value loss, token-mean over the batch. With
    ``shared_prompt`` each distinct prompt runs forward and backward once for the step, as in
    :func:`rlvr.learner.update.update_step`. Rows of demonstrations trained by the SFT loss have no
    returns and are left out."""
    device = next(critic.parameters()).device
    tokens = float(sum((mb.mask * (1 - mb.sft)).sum().item() for mb in micro_batches))
    optimizer.zero_grad(set_to_none=True)
    total = 0.0
    with through_recompute(critic.body):
        prompts, leaves, rows_prompt = trained_prompts_of_step(critic.body, micro_batches, device, shared_prompt)
        for mb, prompt_of in zip(micro_batches, rows_prompt, strict=True):
            mb = mb.to(device)
            values = critic(mb, leaves, prompt_of)
            mask = mb.mask * (1 - mb.sft)
            per_token, _ = value_loss(values, mb.old_values, mb.returns, mask, value_clip=value_clip)
            loss = (per_token * mask).sum() / max(tokens, 1.0)
            loss.backward()
            total += loss.item()
        if prompts is not None:
            prompts.backward_from(leaves)
    grad_norm = torch.nn.utils.clip_grad_norm_(critic.parameters(), max_grad_norm).item()
    optimizer.step()
    return {"critic/loss": total, "critic/grad_norm": grad_norm}
