"""Typed records passed between the stages of the loop.

Shapes use N = completions in the batch (prompts x group size), T = completion length
(padded), P = prompt length (padded).
"""

from dataclasses import dataclass, field
from typing import Any

Messages = list[dict[str, str]]  # chat messages: [{"role": "user", "content": "..."}]


@dataclass(frozen=True)
class Example:
    """One prompt with a checkable answer.

    ``id`` is stable and unique within its task and split (used in sample logs and in
    error messages). ``meta`` carries task-specific fields a reward may read (for
    Countdown: the numbers and target; for a dataset file: every column besides the prompt).

    ``raw_prompt``: the prompt is one message whose content is the model's input as it stands,
    with no chat template (TRL's "standard" format); otherwise the messages go through the
    tokenizer's chat template with ``chat_template_kwargs`` (``enable_thinking=False``, ...).
    """

    id: str
    prompt: Messages
    answer: str
    meta: dict[str, Any] = field(default_factory=dict)
    raw_prompt: bool = False
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)


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
    what happened each turn. Rewards see the whole record but score ``response``: what the model
    itself wrote (never the tool output, which would let a tool print the answer for it).
    """

    example: Example
    text: str
    prompt_ids: list[int]  # [P_i] unpadded prompt token ids (chat template applied)
    token_ids: list[int]  # [T_i] generated ids, stop/eos token included when produced
    logprobs: list[float]  # [T_i] sampling policy's log-prob of each generated token
    loss_mask: list[int]  # [T_i] 1 where the token is trained on (0: tool output, padding)
    finish_reason: str  # "stop" (eos or stop string) | "length" (token budget) | "turns" (turn limit)
    turns: list[Turn] = field(default_factory=list)  # multi-turn only
    budget: int | None = None  # tokens the rollout allowed after the prompt (max_new_tokens; multi-turn: total)
    origin: str = "policy"  # "policy": sampled | "demo": a demonstration (rlvr.demos) | "prefix": continues one
    forced_answer: bool = False  # think budgets (rlvr.rollout.think): the thinking was cut and the answer forced
    think_budget: int | None = None  # thinking rollouts: the thinking budget (HBPO: the subgroup's; S-GRPO: the exit)
    policy_version: int = 0  # optimizer steps the generating weights had taken (replay's staleness: now - this)
    hint_level: int = 0  # Scaf-GRPO: the hint tier in its prompt (0: none; rlvr.samplers.hints)

    @property
    def tool_calls(self) -> int:
        """How many turns called a tool."""
        return sum(turn.tool is not None for turn in self.turns)

    @property
    def response(self) -> str:
        """The model-written text: the transcript without tool output."""
        return "".join(turn.text for turn in self.turns) if self.turns else self.text


@dataclass(frozen=True)
class Demonstration:
    """A worked answer to one prompt, for supervised fine-tuning and SFT+RL mixing (rlvr.demos).

    ``segments`` is the assistant's side after the prompt, in order: ``(text, trained)`` pieces, where
    untrained ones are what the model did not write (tool output, or the chat template's headers
    between turns of a conversation). Text, not tokens: the learner tokenizes each piece on its own,
    as the multi-turn rollout tokenizes an observation, so SFT trains the tokens RL would sample.
    """

    example: Example  # the prompt (and gold answer) the demonstration answers
    segments: tuple[tuple[str, bool], ...]  # [(text, trained)] the continuation after the prompt
    ends_turn: bool = True  # append the tokenizer's end-of-turn token (trained), as a finished rollout has
    source: str = ""  # where it came from ("file.jsonl:12", "generated:arithmetic"), for error messages

    @property
    def text(self) -> str:
        return "".join(text for text, _ in self.segments)
