"""A bandit over task categories (difficulty levels, sub-tasks of a mixture), rewarded by learning progress."""

import math
import random
from typing import Annotated, Literal

import torch
from pydantic import Field

from rlvr.algos.advantages import grpo_advantage
from rlvr.errors import ConfigError
from rlvr.samplers import SAMPLERS, PromptResult, ShuffledSampler
from rlvr.types import Example


def mean_abs_advantage(rewards: tuple[float, ...]) -> float:
    """SEC's learning-progress signal of one group: mean |A_i| of its GRPO advantages (0 for one rollout)."""
    if len(rewards) < 2:
        return 0.0
    advantages, _ = grpo_advantage(torch.tensor([rewards], dtype=torch.float64))
    return advantages.abs().mean().item()


def softmax_choice(values: list[float], temperature: float, rng: random.Random) -> int:
    """An index drawn with probability softmax(values / temperature) (SEC's Boltzmann policy)."""
    top = max(values)
    weights = [math.exp((v - top) / temperature) for v in values]
    return rng.choices(range(len(values)), weights=weights)[0]


def ucb_choice(values: list[float], counts: list[int], explore: float) -> int:
    """The arm maximising value + explore * sqrt(2 ln N / n) (UCB1, DUMP's rule); unplayed arms first."""
    for arm, n in enumerate(counts):
        if n == 0:
            return arm
    total = sum(counts)
    scores = [v + explore * math.sqrt(2 * math.log(total) / n) for v, n in zip(values, counts, strict=True)]
    return max(range(len(scores)), key=scores.__getitem__)


class CategoryBandit:
    def __init__(self, categories: list[str], members: dict[str, list[int]], seed: int, policy: str,
                 temperature: float, lr: float, explore: float) -> None:  # fmt: skip
        self.categories, self.members = categories, members
        self.orders = {c: ShuffledSampler(len(members[c]), f"{seed}-{c}") for c in categories}
        self.category_of = {i: c for c in categories for i in members[c]}
        self.rng = random.Random(f"bandit-{seed}")
        self.policy, self.temperature, self.lr, self.explore = policy, temperature, lr, explore
        self.q = [0.0] * len(categories)  # each arm's estimated learning progress
        self.plays = [0] * len(categories)  # prompts observed from each arm
        self.picked = [0] * len(categories)  # prompts drawn from each arm by the last next()

    def next(self, count: int) -> list[int]:
        self.picked = [0] * len(self.categories)
        chosen = []
        for _ in range(count):
            if self.policy == "softmax":
                arm = softmax_choice(self.q, self.temperature, self.rng)
            else:
                arm = ucb_choice(self.q, [p + k for p, k in zip(self.plays, self.picked, strict=True)], self.explore)
            self.picked[arm] += 1
            category = self.categories[arm]
            chosen.append(self.members[category][self.orders[category].next(1)[0]])
        return chosen

    def observe(self, results: list[PromptResult]) -> dict[str, float]:
        progress: dict[int, list[float]] = {}
        for r in results:
            arm = self.categories.index(self.category_of[r.index])
            progress.setdefault(arm, []).append(mean_abs_advantage(r.rewards))
        for arm, values in progress.items():  # TD(0): Q <- lr * reward + (1 - lr) * Q
            self.q[arm] = td_update(self.q[arm], sum(values) / len(values), self.lr)
            self.plays[arm] += len(values)
        metrics = {f"sampler/q/{c}": q for c, q in zip(self.categories, self.q, strict=True)}
        picked = max(sum(self.picked), 1)
        metrics |= {f"sampler/picked/{c}": k / picked for c, k in zip(self.categories, self.picked, strict=True)}
        return metrics

    def state_dict(self) -> dict:
        return {"orders": {c: o.state_dict() for c, o in self.orders.items()}, "rng": self.rng.getstate(),
                "q": self.q, "plays": self.plays}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        for c, order in self.orders.items():
            order.load_state_dict(state["orders"][c])
        self.rng.setstate(state["rng"])
        self.q, self.plays = list(state["q"]), list(state["plays"])


def td_update(value: float, reward: float, lr: float) -> float:
    """SEC's TD(0) update of an arm's value: lr * reward + (1 - lr) * value."""
    return lr * reward + (1.0 - lr) * value


@SAMPLERS.register("category_bandit")
def category_bandit(
    train_set: list[Example],
    *,
    seed: int,
    key: str = "difficulty",
    policy: Literal["softmax", "ucb"] = "softmax",
    temperature: Annotated[float, Field(gt=0)] = 0.2,
    lr: Annotated[float, Field(gt=0, le=1)] = 0.5,
    explore: Annotated[float, Field(ge=0)] = 0.5,
) -> CategoryBandit:
    """A non-stationary bandit over the categories ``example.meta[key]`` (difficulty levels of the
    ``mixture`` task, or any column of a dataset file).

    - ``policy: softmax`` is SEC, Self-Evolving Curriculum (Chen et al. 2025, arXiv 2505.14970): each
      prompt's category is drawn with probability softmax(Q / temperature), the prompt then by seeded
      epochs within it; after a step each drawn arm's Q moves by TD(0), Q <- lr * r + (1 - lr) * Q,
      with r the mean over its prompts of the group's mean |GRPO advantage| (learning progress: groups
      that are all right or all wrong score 0).
    - ``policy: ucb`` is DUMP (Wang et al. 2025, "DUMP: Automated Distribution-Level Curriculum
      Learning for RL-based LLM Post-training", arXiv 2504.09710): the arm maximising
      Q + explore * sqrt(2 ln N / n), n the prompts drawn from the arm so far (this step's included) and
      N all of them (unplayed arms first), taken for each prompt, with the same exponentially weighted Q
      in place of DUMP's sliding window of absolute advantages (and the argmax, where DUMP may sample).

    Q starts at 0 for every arm. The default temperature, lr and explore are this implementation's
    choices for rewards in [0, ~1.5] (binary rewards, groups of 8), not the papers'.
    """
    members: dict[str, list[int]] = {}
    for i, example in enumerate(train_set):
        if key not in example.meta:
            fields = ", ".join(sorted(example.meta)) or "none"
            raise ConfigError(
                f"sampler.key={key!r}: train example {example.id!r} has no such field (its fields: {fields})"
            )
        members.setdefault(str(example.meta[key]), []).append(i)
    if len(members) < 2:
        raise ConfigError(f"sampler.key={key!r}: every train example has the same value; a bandit needs 2+ categories")
    return CategoryBandit(sorted(members), members, seed, policy, temperature, lr, explore)
