"""A step's rollouts: sampled groups -> scored by the reward mix -> kept by the group filter.

Driver-side and model-free beyond the rollout engine: rounds of rollouts (single-turn, or
multi-turn episodes with ``tools.env``), each completion scored by the run's reward terms
(:func:`rlvr.rewards.mix.reward_mix`: the recipe's rewards and the shaping terms its shorthands
stand for, all ordinary registered rewards), and DAPO's dynamic sampling: keep only groups whose
rewards disagree, sampling more prompts in at most ``rollout.max_sampling_rounds`` rounds.
"""

import time
from dataclasses import dataclass, field

import torch

from rlvr.algos.advantages import AGREE_TOL
from rlvr.config import RunConfig
from rlvr.rewards import RewardTerm, score
from rlvr.rollout import SamplingParams, generate
from rlvr.types import Completion, Example


@dataclass
class StepBatch:
    kept: list[Completion]  # completions trained on, G per prompt, grouped by prompt
    rewards: torch.Tensor  # [len(kept)] total reward
    sampled: list[Completion]  # every completion sampled this step (metrics)
    sampled_rewards: list[float]  # [len(sampled)] totals
    components: dict[str, list[float]]  # name -> [len(sampled)] unweighted reward components (verifier included)
    metrics: dict[str, float] = field(default_factory=dict)


def collect(
    cfg: RunConfig,
    engine,
    sampler,
    train_set: list[Example],
    verifier: str,
    sampling: SamplingParams,
    terms: list[RewardTerm],
    demos=None,
) -> StepBatch:
    """Roll out ``prompts_per_step`` groups and score what the model wrote; with dynamic sampling,
    replace groups whose rewards all agree (they carry no gradient) by fresh prompts. ``demos`` (a
    :class:`rlvr.demos.DemoBank`) guides the groups of prompts that have one when ``sft.group_demos``
    or ``sft.prefix_rollouts`` ask for it (:mod:`rlvr.demos.guided`)."""
    group = cfg.rollout.group_size
    kept: list[Completion] = []
    kept_rewards: list[float] = []
    sampled: list[Completion] = []
    sampled_rewards: list[float] = []
    components: dict[str, list[float]] = {}
    rounds = dropped = 0
    rollout_time = reward_time = 0.0
    while len(kept) < cfg.rollout.prompts_per_step * group and rounds < cfg.rollout.max_sampling_rounds:
        rounds += 1
        started = time.perf_counter()
        wanted = cfg.rollout.prompts_per_step - len(kept) // group
        examples = [train_set[i] for i in sampler.next(wanted)]
        if demos is not None and (cfg.sft.group_demos or cfg.sft.prefix_rollouts):
            from rlvr.demos.guided import guided_groups

            groups = guided_groups(cfg, engine, examples, group, sampling, demos, sample_groups)
        else:
            groups = sample_groups(cfg, engine, examples, group, sampling)
        completions = [c for g in groups for c in g]
        rolled = time.perf_counter()
        totals, parts = score(completions, None, terms, verifier=verifier, group_size=group)
        reward_time += time.perf_counter() - rolled
        rollout_time += rolled - started
        for name, values in parts.items():
            components.setdefault(name, []).extend(values)
        sampled += completions
        sampled_rewards += totals
        for start in range(0, len(completions), group):
            values = totals[start : start + group]
            if cfg.rollout.dynamic_sampling and max(values) - min(values) <= AGREE_TOL:
                dropped += 1
                continue
            kept += completions[start : start + group]
            kept_rewards += values
        if not cfg.rollout.dynamic_sampling:
            break
    metrics = {"time/rollout": rollout_time, "time/reward": reward_time}
    if cfg.rollout.dynamic_sampling:
        metrics |= {"sampling/rounds": float(rounds), "sampling/dropped_groups": float(dropped)}
        metrics["sampling/kept_groups"] = float(len(kept) // group)
    return StepBatch(kept, torch.tensor(kept_rewards), sampled, sampled_rewards, components, metrics)


def sample_groups(cfg: RunConfig, engine, examples: list[Example], n: int, sampling: SamplingParams):
    """n completions per example: single-turn, thinking rollouts (``think.enabled``, rlvr.rollout.think),
    or multi-turn episodes with ``tools.env``."""
    if cfg.think.enabled:
        from rlvr.rollout.think import think_generate

        return think_generate(engine, examples, n, sampling, cfg.think)
    if cfg.tools.env == "none":
        return generate(engine, examples, n, sampling)
    from rlvr.envs.rollout import multi_turn_generate

    return multi_turn_generate(engine, examples, n, sampling, cfg.tools)
