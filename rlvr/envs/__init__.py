"""Environments for multi-turn rollouts: the model acts, a tool answers, the model goes on.

An environment is any object with these members (a Protocol, no base class):

- ``stop: list[str]``: strings that end a model turn so the environment can act (the end of a
  tool call: a closing code fence, ``</search>``);
- ``reset(example) -> Messages``: the first observation, the chat prompt of the episode;
- ``step(text) -> StepResult``: the model's turn (ending with a stop string) in, the tool's
  observation out, plus whether the episode is done;
- ``close() -> None``: free what the episode held (a sandbox process).

Episodes end when the model stops on its own (eos), when ``step`` says done, at
``tools.max_turns`` model turns, or at ``tools.max_total_tokens`` tokens after the prompt.
``ENVS`` maps ``tools.env`` names to factories ``(ToolsConfig) -> Env`` called once per episode.
"""

from dataclasses import dataclass, field
from typing import Protocol

from rlvr.registry import Registry
from rlvr.types import Completion, Example, Messages


@dataclass
class StepResult:
    observation: str  # text appended after the model's turn, masked out of the loss ("" for none)
    done: bool  # the episode ends here
    reward: float | None = None  # an optional reward from the environment (logged as env_reward)
    tool: str | None = None  # the tool that ran (None: the turn called nothing)
    error: str | None = None  # the call's failure kind, or None when it worked
    info: dict = field(default_factory=dict)


class Env(Protocol):
    stop: list[str]

    def reset(self, example: Example) -> Messages: ...

    def step(self, text: str) -> StepResult: ...

    def close(self) -> None: ...


ENVS: Registry = Registry("tools.env")


def tool_metrics(completions: list[Completion]) -> dict[str, float]:
    """What ZeroTIR tracks per step: how many responses call a tool, how often, how often calls
    fail, and how many turns episodes take."""
    n = max(len(completions), 1)
    calls = [c.tool_calls for c in completions]
    errors = sum(sum(t.error is not None for t in c.turns) for c in completions)
    return {
        "tool/call_rate": sum(k > 0 for k in calls) / n,
        "tool/calls_per_response": sum(calls) / n,
        "tool/error_rate": errors / max(sum(calls), 1),
        "tool/turns": sum(len(c.turns) for c in completions) / n,
        "tool/turn_limit_frac": sum(c.finish_reason == "turns" for c in completions) / n,
        "tool/model_tokens": sum(sum(c.loss_mask) for c in completions) / n,
    }
