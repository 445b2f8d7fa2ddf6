"""LASER-D's adaptive target lengths: a reward whose targets a monitor re-chooses during training.

LASER-D (Liu et al. 2025, "Learn to Reason Efficiently with Adaptive Length-based Reward Shaping",
arXiv 2505.15612; authors' code hkust-nlp/Laser, ``_choose_target_length``) rewards a correct
response that fits its difficulty band's target length L_A(d) (the ``laser`` step reward), and
re-chooses the targets as the policy changes: for band d (easy: group accuracy >= 2/3, medium:
>= 1/3, hard: below) and each candidate length L, the coverage P_{L,d} is the share of band d's
monitored responses (right or wrong) of at most L tokens; the expected correct responses are
ECR = floor(P_{L,d} x C_d) with C_d = floor(2G/3), floor(G/3) and 1 for easy, medium and hard
(G the group size), and L_A(d) is the smallest candidate with ECR >= ``expected_correct`` (1),
else the longest monitored response of the band.

The pure parts are :func:`choose_targets` and the reward ``laser_d`` (the ``laser`` reward at the
targets it is given). :class:`LaserDMonitor` is the state between them: it collects each step's
sampled groups and, every ``every`` steps, re-chooses the targets and re-binds the reward term;
a checkpoint saves it (``run.keep``), so a resumed run continues with the same targets and window.

Differences from the paper's code: the monitoring set is the training rollouts of the last
``every`` steps, not a separate pass over 500 fixed training problems at temperature 0.6 every 20
steps (no extra sampling; the window holds every prompt the policy just saw); until the first
monitoring the targets are ``upper`` (no length pressure yet).
"""

import inspect
import math
from dataclasses import replace
from typing import Annotated, Literal

from pydantic import Field

from rlvr.rewards import GROUP_REWARDS, RewardTerm, bind_reward
from rlvr.rewards.length import laser, model_tokens

BANDS = ("easy", "medium", "hard")


def band_of(accuracy: float) -> str:
    """LASER-D's difficulty band of a prompt from its group's accuracy."""
    return "easy" if accuracy >= 2 / 3 else "medium" if accuracy >= 1 / 3 else "hard"


def expected_capacity(band: str, group_size: int) -> int:
    """C_d: how many of G responses a band's prompt is expected to get right."""
    return {"easy": math.floor(2 * group_size / 3), "medium": math.floor(group_size / 3), "hard": 1}[band]


def choose_targets(
    lengths: dict[str, list[int]], group_size: int, candidates: list[int], expected_correct: int = 1
) -> dict[str, int]:
    """L_A(d) per band with monitored responses (see the module docstring); bands with none are left out."""
    targets = {}
    for band, seen in lengths.items():
        if not seen:
            continue
        capacity = expected_capacity(band, group_size)
        chosen = None
        for length in sorted(candidates):
            coverage = sum(n <= length for n in seen) / len(seen)
            if math.floor(coverage * capacity) >= expected_correct:
                chosen = length
                break
        targets[band] = chosen if chosen is not None else max(seen)
    return targets


@GROUP_REWARDS.register("laser_d")
def laser_d(
    completions,
    correct: list[float],
    *,
    upper: Annotated[int, Field(ge=1)],
    lower: Annotated[int, Field(ge=1)] = 16,
    stride: Annotated[int, Field(ge=1)] = 16,
    every: Annotated[int, Field(ge=1)] = 5,
    expected_correct: Annotated[int, Field(ge=1)] = 1,
    bonus: Annotated[float, Field(gt=0)] = 0.5,
    mode: Literal["reward", "penalty", "hybrid"] = "reward",
    targets: dict[str, int] | None = None,
) -> list[float]:
    """LASER-D with adaptive targets: the ``laser`` step reward at ``targets`` (band -> length, set
    by :class:`LaserDMonitor`; ``upper`` for a band without one). ``lower``, ``stride``, ``upper``
    give the candidate lengths (the paper's range(lower, 16384 + 1024, 1024), scaled), ``every`` how
    often the monitor re-chooses them, ``expected_correct`` the ECR threshold."""
    targets = targets or {}
    return laser(
        completions, correct, target=targets.get("hard", upper), bonus=bonus, mode=mode,
        target_easy=targets.get("easy", upper), target_medium=targets.get("medium", upper),
    )  # fmt: skip


class LaserDMonitor:
    """Collects the sampled groups and re-chooses ``laser_d``'s targets every ``every`` steps."""

    def __init__(self, params: dict, group_size: int):
        self.params = {k: v for k, v in params.items() if k != "targets"}  # the recipe's, re-bound each step
        defaults = {k: p.default for k, p in inspect.signature(laser_d).parameters.items() if p.default is not p.empty}
        settings = {**defaults, **self.params}  # the reward's own defaults: one place for them
        self.group_size = group_size
        self.every, self.upper = int(settings["every"]), int(settings["upper"])
        self.expected_correct = int(settings["expected_correct"])
        self.candidates = list(range(int(settings["lower"]), self.upper + 1, int(settings["stride"]))) or [self.upper]
        self.targets: dict[str, int] = {}
        self.window: dict[str, list[int]] = {band: [] for band in BANDS}
        self.steps_seen = 0

    def terms(self, terms: list[RewardTerm]) -> list[RewardTerm]:
        """The reward mix with ``laser_d`` bound to the current targets."""
        bound = bind_reward("laser_d", {**self.params, "targets": dict(self.targets)})
        return [replace(t, fn=bound.fn) if t.name == "laser_d" else t for t in terms]

    def observe(self, sampled, correct: list[float]) -> dict[str, float]:
        """Add a step's sampled groups (G each, in order, with the verifier's scores); re-choose the
        targets every ``every`` steps. Returns the targets in force as metrics."""
        g = self.group_size
        for start in range(0, len(sampled) - g + 1, g):
            scores = correct[start : start + g]
            band = band_of(sum(s >= 1.0 for s in scores) / g)
            self.window[band] += [model_tokens(c) for c in sampled[start : start + g]]
        self.steps_seen += 1
        if self.steps_seen % self.every == 0:
            self.targets = choose_targets(self.window, g, self.candidates, self.expected_correct)
            self.window = {band: [] for band in BANDS}
        return {f"laser_d/target_{band}": float(self.targets.get(band, self.upper)) for band in BANDS}

    def state_dict(self) -> dict:
        return {"targets": dict(self.targets), "window": {k: list(v) for k, v in self.window.items()},
                "steps_seen": self.steps_seen}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        self.targets = dict(state["targets"])
        self.window = {k: list(v) for k, v in state["window"].items()}
        self.steps_seen = int(state["steps_seen"])
