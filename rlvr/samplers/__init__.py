"""Samplers: which training examples the next step uses, learning from what the policy solves.

A sampler is any object with this protocol (:class:`Sampler`)::

    next(count) -> list[int]                      # indices into the task's train split
    observe(results: list[PromptResult]) -> dict  # each step's per-prompt outcomes; returns metrics
    state_dict() / load_state_dict(state)          # checkpointed: a resumed run continues exactly

``sampler: {name: mopps, target: 0.5}`` picks one from :data:`SAMPLERS`. Every factory has one
signature, ``fn(train_set, *, seed, <hyper-parameters>) -> Sampler``: the hyper-parameters are
keyword-only with their defaults and are checked against it at load, as a task's keys are.

- ``uniform``: seeded epochs over the train split (the default; learns nothing);
- ``pass_rate``: skips prompts whose recent pass rate says too easy or too hard (online filtering);
- ``mopps``: MoPPS's streaming Beta posteriors and Thompson sampling toward a target success rate;
- ``category_bandit``: SEC's / DUMP's bandit over task categories, rewarded by mean |advantage|.
"""

import random
from dataclasses import dataclass
from typing import Protocol

from rlvr.registry import Registry
from rlvr.types import Example

SAMPLERS: Registry = Registry("sampler", context=("seed",))


@dataclass(frozen=True)
class PromptResult:
    """One prompt's outcome in one step, as samplers see it (rewards of the policy's rollouts only)."""

    index: int  # into the train split
    step: int
    rewards: tuple[float, ...]  # [n] total reward of each rollout (n may differ across prompts)
    correct: tuple[bool, ...]  # [n] the verifier's verdict on each rollout

    @property
    def pass_rate(self) -> float:
        return sum(self.correct) / len(self.correct) if self.correct else float("nan")


class Sampler(Protocol):
    def next(self, count: int) -> list[int]: ...

    def observe(self, results: list[PromptResult]) -> dict[str, float]: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class ShuffledSampler:
    """Epochs over the train split, each a fresh seeded permutation (the seed and epoch fix it)."""

    def __init__(self, size: int, seed: int | str) -> None:
        self.size = size
        self.seed = seed
        self.epoch = 0
        self.position = 0
        self._order = self._permutation()

    def _permutation(self) -> list[int]:
        order = list(range(self.size))
        random.Random(f"{self.seed}-{self.epoch}").shuffle(order)
        return order

    def next(self, count: int) -> list[int]:
        picked = []
        while len(picked) < count:
            if self.position == self.size:
                self.epoch += 1
                self.position = 0
                self._order = self._permutation()
            picked.append(self._order[self.position])
            self.position += 1
        return picked

    def observe(self, results: list[PromptResult]) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = state["epoch"]
        self.position = state["position"]
        self._order = self._permutation()


@SAMPLERS.register("uniform")
def uniform(train_set: list[Example], *, seed: int) -> ShuffledSampler:
    """Seeded epochs over the train split: every prompt once per epoch, in a fresh order each epoch."""
    return ShuffledSampler(len(train_set), seed)


def load_samplers() -> None:
    """Import the modules whose samplers register themselves."""
    from rlvr.samplers import bandit, difficulty  # noqa: F401


def make_sampler(train_set: list[Example], name: str, params: dict, seed: int) -> Sampler:
    """The sampler ``name`` with its hyper-parameters checked (a ConfigError names ``sampler.<key>``)."""
    load_samplers()
    return SAMPLERS.bind(name, params, key="sampler")(train_set, seed=seed)
