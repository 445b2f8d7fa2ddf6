"""A step's rollouts: sampled groups -> scored by the reward mix -> kept by the group filter.

Driver-side and model-free beyond the rollout engine: rounds of rollouts (single-turn, or
multi-turn episodes with ``tools.env``), each completion scored by the run's reward terms
(:func:`rlvr.rewards.mix.reward_mix`: the recipe's rewards and the shaping terms its shorthands
stand for, all ordinary registered rewards), and DAPO's dynamic sampling: keep only groups whose
rewards disagree, sampling more prompts in at most ``rollout.max_sampling_rounds`` rounds.
"""

import time
from dataclasses import dataclass, field, replace

import torch

from rlvr.algos.advantages import AGREE_TOL
from rlvr.config import RunConfig
from rlvr.rewards import RewardTerm, score
from rlvr.rollout import SamplingParams, generate
from rlvr.rollout.seeds import derive_seed
from rlvr.samplers import PromptResult
from rlvr.types import Completion, Example


@dataclass
class StepBatch:
    kept: list[Completion]  # completions trained on, grouped by prompt (groups of `sizes`)
    rewards: torch.Tensor  # [len(kept)] total reward
    sampled: list[Completion]  # every completion sampled this step (metrics)
    sampled_rewards: list[float]  # [len(sampled)] totals
    components: dict[str, list[float]]  # name -> [len(sampled)] unweighted reward components (verifier included)
    metrics: dict[str, float] = field(default_factory=dict)
    sizes: list[int] = field(default_factory=list)  # [groups in kept] each group's size (ragged with an allocation)
    results: list[PromptResult] = field(default_factory=list)  # every sampled group's outcome, for the sampler


def collect(
    cfg: RunConfig,
    engine,
    sampler,
    train_set: list[Example],
    verifier: str,
    sampling: SamplingParams,
    terms: list[RewardTerm],
    demos=None,
    *,
    step: int = 1,
    scaffold=None,
    version: int | None = None,
    scorer=score,
) -> StepBatch:
    """Roll out ``prompts_per_step`` groups and score what the model wrote; with dynamic sampling,
    replace groups whose rewards all agree (they carry no gradient) by fresh prompts. ``demos`` (a
    :class:`rlvr.demos.DemoBank`) guides the groups of prompts that have one when ``sft.group_demos``
    or ``sft.prefix_rollouts`` ask for it (:mod:`rlvr.demos.guided`). ``rollout.allocation`` sizes
    each group (:mod:`rlvr.samplers.allocation`); ``scaffold`` (a :class:`HintScaffold`) hints the
    groups the policy cannot solve. ``version``: the optimizer steps in the weights that sample (default
    ``step - 1``; one less when the step was generated ahead, :mod:`rlvr.distributed.pipeline`). ``scorer``:
    :func:`rlvr.rewards.score` or a function with its signature (:mod:`rlvr.distributed.reward_pool`)."""
    version = step - 1 if version is None else version
    prompts = cfg.rollout.prompts_per_step
    kept: list[Completion] = []
    kept_rewards: list[float] = []
    sizes: list[int] = []
    sampled: list[Completion] = []
    sampled_rewards: list[float] = []
    components: dict[str, list[float]] = {}
    results: list[PromptResult] = []
    rounds = dropped = 0
    rollout_time = reward_time = 0.0
    hint_metrics: dict[str, float] = {}
    base_sampling = sampling
    while len(sizes) < prompts and rounds < cfg.rollout.max_sampling_rounds:
        rounds += 1
        started = time.perf_counter()
        sampling = salted(base_sampling, "round", rounds)
        indices = sampler.next(prompts - len(sizes))
        examples = [train_set[i] for i in indices]
        groups = versioned(allocated_groups(cfg, engine, examples, sampling, verifier, demos), version)
        originals = [list(g) for g in groups]
        if scaffold is not None:
            groups, more = scaffold.scaffold(
                groups, judged(groups, verifier), step,
                lambda exs, n, sampling=sampling: versioned(sample_groups(cfg, engine, exs, n, sampling), version),
                lambda g: judge(g, verifier),
            )  # fmt: skip
            hint_metrics = {k: hint_metrics.get(k, 0.0) + v for k, v in more.items()}
        completions = [c for g in groups for c in g]
        group_sizes = [len(g) for g in groups]
        rolled = time.perf_counter()
        totals, parts = scorer(completions, None, terms, verifier=verifier, group_size=group_sizes)
        hinted = [b for b, g in enumerate(groups) if g[0].hint_level]
        bare: dict[int, tuple[list[Completion], list[float], dict[str, list[float]]]] = {}
        if hinted:  # the groups as sampled from the bare prompt: metrics and the sampler see those
            plain = [c for b in hinted for c in originals[b]]
            plain_totals, plain_parts = scorer(plain, None, terms, verifier=verifier,
                                              group_size=[len(originals[b]) for b in hinted])  # fmt: skip
            start = 0
            for b in hinted:
                end = start + len(originals[b])
                bare[b] = (plain[start:end], plain_totals[start:end], {k: v[start:end] for k, v in plain_parts.items()})
                start = end
        reward_time += time.perf_counter() - rolled
        rollout_time += rolled - started
        for name, values in parts.items():
            components.setdefault(name, []).extend(values)
        sampled += completions
        sampled_rewards += totals
        for b in hinted:  # the failed rollout a hinted one replaced: generated, scored, not trained
            plain, plain_totals, plain_parts = bare[b]
            sampled.append(plain[0])
            sampled_rewards.append(plain_totals[0])
            for name, values in plain_parts.items():
                components[name].append(values[0])
        start = 0
        for b, (index, size) in enumerate(zip(indices, group_sizes, strict=True)):
            values, group = totals[start : start + size], completions[start : start + size]
            if b in bare:
                own_group, own_values, own_parts = bare[b]
                right = [v >= 1.0 for v in own_parts[verifier]]
            else:
                own_group, own_values = group, values
                right = [v >= 1.0 for v in parts[verifier][start : start + size]]
            start += size
            own = [j for j, c in enumerate(own_group) if c.origin == "policy"]  # the bare prompt's own rollouts
            results.append(PromptResult(index, step, tuple(own_values[j] for j in own), tuple(right[j] for j in own)))
            if cfg.rollout.dynamic_sampling and max(values) - min(values) <= AGREE_TOL:
                dropped += 1
                continue
            kept += group
            kept_rewards += values
            sizes.append(size)
        if not cfg.rollout.dynamic_sampling:
            break
    generated = sum(c.origin != "demo" and not c.hint_level for c in sampled) + hint_metrics.get("hints/rollouts", 0.0)
    metrics = {"time/rollout": rollout_time, "time/reward": reward_time, "sampling/rollouts": float(generated)}
    if cfg.rollout.dynamic_sampling:
        metrics |= {"sampling/rounds": float(rounds), "sampling/dropped_groups": float(dropped)}
        metrics["sampling/kept_groups"] = float(len(sizes))
    if cfg.rollout.allocation.name != "fixed":
        metrics |= {"sampling/group_size_min": float(min(sizes, default=0)),
                    "sampling/group_size_max": float(max(sizes, default=0))}  # fmt: skip
    metrics |= hint_metrics
    return StepBatch(kept, torch.tensor(kept_rewards), sampled, sampled_rewards, components, metrics, sizes, results)


def judge(completions: list[Completion], verifier: str) -> list[bool]:
    """The verifier's verdict on each completion (scored on its own, without the reward mix)."""
    _, parts = score(completions, None, [], verifier=verifier)
    return [v >= 1.0 for v in parts[verifier]]


def judged(groups: list[list[Completion]], verifier: str) -> list[list[bool]]:
    """:func:`judge` over every group in one call, split back by group."""
    flat = judge([c for g in groups for c in g], verifier)
    out, start = [], 0
    for g in groups:
        out.append(flat[start : start + len(g)])
        start += len(g)
    return out


def versioned(groups: list[list[Completion]], version: int) -> list[list[Completion]]:
    """The groups with each completion's ``policy_version``: the optimizer steps its weights had taken."""
    return [[replace(c, policy_version=version) for c in g] for g in groups]


def allocated_groups(cfg: RunConfig, engine, examples: list[Example], sampling: SamplingParams, verifier: str, demos):
    """Each example's group: ``group_size`` rollouts, or as many as ``rollout.allocation`` gives it
    in its rounds (each round's outcomes judged by the verifier before the next is allocated)."""
    group = cfg.rollout.group_size
    if demos is not None and (cfg.sft.group_demos or cfg.sft.prefix_rollouts):
        from rlvr.demos.guided import guided_groups

        return guided_groups(cfg, engine, examples, group, sampling, demos, sample_groups)
    spec = cfg.rollout.allocation
    if spec.name == "fixed":
        return sample_groups(cfg, engine, examples, group, sampling)
    from rlvr.samplers.allocation import ALLOCATIONS

    allocate = ALLOCATIONS.bind(spec.name, spec.params(), key="rollout.allocation")
    total = budget = group * len(examples)
    groups: list[list[Completion]] = [[] for _ in examples]
    outcomes: list[list[float]] = [[] for _ in examples]
    while budget > 0:
        extra = allocate(outcomes, budget, total=total)
        if not any(extra):
            break
        rows = [b for b, k in enumerate(extra) for _ in range(k)]
        round_sampling = salted(sampling, "allocation", total - budget)  # a prompt's later rows: fresh streams
        new = [g[0] for g in sample_groups(cfg, engine, [examples[b] for b in rows], 1, round_sampling)]
        for b, c, right in zip(rows, new, judge(new, verifier), strict=True):
            groups[b].append(c)
            outcomes[b].append(float(right))
        budget -= len(rows)
    return groups


def salted(sampling: SamplingParams, *parts) -> SamplingParams:
    """``sampling`` with a seed of its own for one more call (rlvr.rollout.seeds): a prompt sampled
    again in a later round must not repeat its earlier rows' streams."""
    return sampling if sampling.seed is None else replace(sampling, seed=derive_seed(sampling.seed, *parts))


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
