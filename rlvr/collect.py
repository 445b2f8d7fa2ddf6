"""A step's training batch: sampled groups -> shaped rewards -> per-token advantages.

The stages between rollout and update that the papers change: dynamic sampling (DAPO: keep
only groups whose rewards disagree, sampling more prompts in bounded extra rounds), reward
shaping (DAPO's soft overlong penalty, KL subtracted from the reward), and the advantage
estimator (a group estimator from rlvr.algos, or GAE with a learned critic).
"""

import time
from dataclasses import dataclass, field

import torch

from rlvr.algos import ADVANTAGES
from rlvr.algos.shaping import otc_tool_reward, overlong_penalty
from rlvr.config import RunConfig
from rlvr.errors import ConfigError, TrainingError
from rlvr.learner.forward.logprobs import body_and_head, completion_logprobs, per_row
from rlvr.learner.microbatch import MicroBatch
from rlvr.registry import call_with
from rlvr.rewards import score
from rlvr.rollout import SamplingParams, generate
from rlvr.types import Completion, Example


@dataclass
class StepBatch:
    kept: list[Completion]  # completions trained on, G per prompt, grouped by prompt
    rewards: torch.Tensor  # [len(kept)] shaped total reward
    sampled: list[Completion]  # every completion sampled this step (metrics)
    sampled_rewards: list[float]  # [len(sampled)] shaped totals
    components: dict[str, list[float]]  # name -> [len(sampled)] unweighted reward components
    metrics: dict[str, float] = field(default_factory=dict)


def collect(cfg: RunConfig, engine, sampler, train_set, verifier: str, sampling: SamplingParams) -> StepBatch:
    """Roll out ``prompts_per_step`` groups; with dynamic sampling, replace groups whose rewards all
    agree (they carry no gradient) by fresh prompts, for at most ``max_sampling_rounds`` rounds."""
    group = cfg.rollout.group_size
    specs = [(spec.name, spec.weight) for spec in cfg.rewards]
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
        completions = [c for g in sample_groups(cfg, engine, examples, group, sampling) for c in g]
        rolled = time.perf_counter()
        totals, parts = score([c.text for c in completions], [c.example for c in completions], specs)
        if verifier not in parts:  # accuracy is logged even when the verifier is not a reward
            _, extra = score([c.text for c in completions], [c.example for c in completions], [(verifier, 0.0)])
            parts[verifier] = extra[verifier]
        if cfg.algo.overlong_cache_tokens:
            penalty = overlong_penalty(
                torch.tensor([float(len(c.token_ids)) for c in completions]),
                max_tokens=cfg.rollout.max_new_tokens,
                cache_tokens=cfg.algo.overlong_cache_tokens,
            ).tolist()
            parts["overlong"] = penalty
            totals = [t + p for t, p in zip(totals, penalty, strict=True)]
        reward_time += time.perf_counter() - rolled
        rollout_time += rolled - started
        for name, values in parts.items():
            components.setdefault(name, []).extend(values)
        sampled += completions
        sampled_rewards += totals
        for start in range(0, len(completions), group):
            values = totals[start : start + group]
            if cfg.rollout.dynamic_sampling and max(values) - min(values) < 1e-9:
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
    """n completions per example: single-turn, or multi-turn episodes with ``tools.env``."""
    if cfg.tools.env == "none":
        return generate(engine, examples, n, sampling)
    from rlvr.envs.rollout import multi_turn_generate

    return multi_turn_generate(engine, examples, n, sampling, cfg.tools)


def tool_cost(cfg: RunConfig, completions: list[Completion], correct: list[float], verifier: str) -> list[float]:
    """The reward added for tool use: -cost_coef per call, or OTC's efficiency factor applied to
    the verifier's reward (correctness x weight x (r_tool - 1), so a correct answer earns
    weight x r_tool)."""
    calls = torch.tensor([float(sum(t.tool is not None for t in c.turns)) for c in completions])
    if cfg.tools.cost == "per_call":
        return (-cfg.tools.cost_coef * calls).tolist()
    weight = sum(spec.weight for spec in cfg.rewards if spec.name == verifier)
    if weight == 0:
        raise ConfigError(f"tools.cost=otc scales the verifier's reward, but {verifier!r} is not among the rewards")
    hits = (torch.tensor(correct) >= 1.0).float()
    group = cfg.rollout.group_size
    r_tool = otc_tool_reward(calls.view(-1, group), hits.view(-1, group), c=cfg.tools.otc_c).flatten()
    return (hits * weight * (r_tool - 1.0)).tolist()


def token_width(completions: list[Completion]) -> int:
    return max((len(c.token_ids) for c in completions), default=1) or 1


def reference_kl(
    ref_model,
    micro_batches: list[MicroBatch],
    count: int,
    width: int,
    estimator,
    temperature: float,
    shared_prompt: bool = True,
    packed_sequences: bool = True,
):
    """Per-token KL(rollout policy || reference) [count, width], rows in completion order; with
    ``shared_prompt`` each distinct prompt runs once through the reference model; ``packed_sequences`` as
    in :func:`rlvr.learner.forward.hidden.completion_hidden`."""

    def kl(mb: MicroBatch, prompts, prompt_of) -> torch.Tensor:
        ref_logprobs, _ = completion_logprobs(
            ref_model, mb, temperature, prompts=prompts, prompt_of=prompt_of, packed_sequences=packed_sequences
        )
        return estimator(mb.rollout_logprobs, ref_logprobs)[0]

    body = body_and_head(ref_model)[0] if shared_prompt else None
    return per_row(micro_batches, count, width, next(ref_model.parameters()).device, kl, body=body)


def group_advantages(
    cfg: RunConfig, rewards: torch.Tensor, width: int, lengths: list[int]
) -> tuple[torch.Tensor, dict]:
    """The configured group estimator on [B, G] rewards, broadcast over each completion's tokens."""
    estimator = ADVANTAGES.get(cfg.algo.advantage)
    grouped = rewards.view(-1, cfg.rollout.group_size)
    try:
        advantages, metrics = call_with(estimator, grouped, **estimator_hparams(cfg))
    except ValueError as err:  # e.g. a binary-reward estimator given a non-binary reward
        raise TrainingError(f"algo.advantage={cfg.algo.advantage}: {err}") from None
    per_token = advantages.flatten().unsqueeze(1).expand(-1, width).clone()
    for i, length in enumerate(lengths):
        per_token[i, length:] = 0.0
    return per_token, metrics


def estimator_hparams(cfg: RunConfig) -> dict:
    """Every hyper-parameter a registered algorithm function may declare, by its keyword name."""
    a = cfg.algo
    return {
        "eps": a.std_eps,
        "pass_k": a.pass_k,
        "clip_low": a.clip_low,
        "clip_high": a.clip_high,
        "dual_clip_c": a.dual_clip_c,
        "cispo_clip_low": a.cispo_clip_low,
        "cispo_clip_high": a.cispo_clip_high,
        "max_tokens": cfg.rollout.max_new_tokens,
    }
