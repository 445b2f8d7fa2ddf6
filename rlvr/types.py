"""Typed records passed between the stages of the loop.

Shapes use N = completions in the batch (prompts x group size), T = completion length
(padded), P = prompt length (padded).
"""

from dataclasses import dataclass, field
from typing import Any

import torch

Messages = list[dict[str, str]]  # chat messages: [{"role": "user", "content": "..."}]


@dataclass(frozen=True)
class Example:
    """One prompt with a checkable answer.

    ``id`` is stable and unique within its task and split (used in sample logs and in
    error messages). ``meta`` carries task-specific fields a reward may read (for
    Countdown: the numbers and target).
    """

    id: str
    prompt: Messages
    answer: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Turn:
    """One model turn of a multi-turn episode and what the environment answered."""

    text: str  # what the model wrote this turn
    observation: str  # the environment's reply appended after it ("" when none)
    tool: str | None = None  # the tool called this turn (None: no call)
    error: str | None = None  # the call's failure kind ("timeout", "exception", ...) or None


@dataclass
class Completion:
    """One sampled response to one prompt, as the rollout engine produced it.

    Multi-turn episodes (rlvr.envs) interleave model tokens and tool output in ``token_ids``;
    ``loss_mask`` is 0 on the tool output, ``text`` is the whole transcript and ``turns`` says
    what happened each turn. Rewards score ``response``: what the model itself wrote.
    """

    example: Example
    text: str
    prompt_ids: list[int]  # [P_i] unpadded prompt token ids (chat template applied)
    token_ids: list[int]  # [T_i] generated ids, stop/eos token included when produced
    logprobs: list[float]  # [T_i] sampling policy's log-prob of each generated token
    loss_mask: list[int]  # [T_i] 1 where the token is trained on (0: tool output, padding)
    finish_reason: str  # "stop" (eos or stop string) | "length" (token budget) | "turns" (turn limit)
    turns: list[Turn] = field(default_factory=list)  # multi-turn only

    @property
    def response(self) -> str:
        """The model-written text: the transcript without tool output."""
        return "".join(turn.text for turn in self.turns) if self.turns else self.text


@dataclass
class Group:
    """The G completions of one prompt, with their scores."""

    example: Example
    completions: list[Completion]
    rewards: torch.Tensor  # [G] total (weighted) reward
    components: dict[str, torch.Tensor]  # name -> [G] unweighted reward per component


@dataclass
class TrainBatch:
    """Padded tensors for the update; built from groups by ``rlvr.trainer``."""

    input_ids: torch.Tensor  # [N, P+T] left-padded prompt then right-padded completion
    attention_mask: torch.Tensor  # [N, P+T] 1 on real tokens
    completion_mask: torch.Tensor  # [N, T] float loss mask over completion positions
    old_logprobs: torch.Tensor  # [N, T] sampling policy's log-probs (0 on padding)
    advantages: torch.Tensor  # [N, T] advantage broadcast over each completion's tokens
    prompt_width: int  # P: completion token t sits at column P + t of input_ids
