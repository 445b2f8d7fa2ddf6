"""Rollout engines: turn examples into groups of sampled completions.

A rollout engine is any object with these methods (a Protocol, no base class):

- ``generate(examples, n, sampling) -> list[list[Completion]]``: n completions per example,
  each with token ids, the sampling policy's log-probs, a loss mask and a finish reason;
- ``update_weights(model) -> None``: make the engine sample from the trainer's new weights.

The first engine drives transformers' ``generate`` on the policy module itself.
"""

from dataclasses import dataclass, field
from typing import Protocol

from rlvr.types import Completion, Example


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 48
    temperature: float = 1.0  # 0: greedy
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    return_logprobs: bool = True


class RolloutEngine(Protocol):
    def generate(self, examples: list[Example], n: int, sampling: SamplingParams) -> list[list[Completion]]: ...

    def update_weights(self, model) -> None: ...


def make_engine(name: str, model, tokenizer, batch_size: int) -> RolloutEngine:
    from rlvr.rollout.hf import HFGenerateEngine

    if name == "hf":
        return HFGenerateEngine(model, tokenizer, batch_size=batch_size)
    raise ValueError(f"unknown rollout engine {name!r}")
