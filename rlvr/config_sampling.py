"""Config sections for spending fewer rollouts: off-policy replay (``replay``) and hints (``hints``).

The sampler (``sampler: {name: mopps}``, :mod:`rlvr.samplers`) and the per-prompt rollout allocation
(``rollout.allocation: {name: xrpo}``, :mod:`rlvr.samplers.allocation`) are registered components;
these two are plain sections. :func:`check_sampling` holds the checks that span sections.
"""

from pydantic import Field

from rlvr.config_base import Section


class ReplayConfig(Section):
    """ReMix-style reuse of recent rollouts (rlvr.samplers.replay): more updates per rollout generated."""

    groups: int = Field(0, ge=0)  # replayed groups trained on each step beside the fresh ones; 0: off
    capacity: int = Field(64, ge=1)  # groups the buffer keeps (the oldest go first)
    reuse: int = Field(1, ge=1)  # times a stored group is replayed after its own step
    max_staleness: int = Field(4, ge=1)  # steps; a group generated longer ago is dropped
    until_step: int | None = Field(None, ge=1)  # ReMix's policy reincarnation: no replay after this step


class HintConfig(Section):
    """Scaf-GRPO's tiered in-prompt hints for groups the policy cannot solve (rlvr.samplers.hints)."""

    enabled: bool = False
    after: int = Field(1, ge=1)  # consecutive all-wrong groups of a prompt (this step's included) before hints
    start: int = Field(0, ge=0)  # Scaf-GRPO's guidance exemption: no hints up to this step
    samples: int = Field(2, ge=1)  # hinted rollouts per tier tried; a right one replaces one failed rollout
    prefix: str = "\n\nHint: "  # put between the prompt and the hint


def check_sampling(config) -> None:
    """What replay, hints and a ragged allocation ask of the rest of the config (ValueError if not met)."""
    allocation, hints = config.rollout.allocation, config.hints
    sft = config.sft
    if hints.enabled:
        if config.think.enabled:
            raise ValueError("hints.enabled needs think.enabled=false: thinking rollouts plan their rows by position "
                             "(budget subgroups, modes, exits), which a hinted row would take")  # fmt: skip
    if allocation.name != "fixed":
        if config.think.enabled:
            raise ValueError(f"rollout.allocation={allocation.name} gives prompts different group sizes: it needs "
                             "think.enabled=false (budget subgroups and mode splits assume equal groups)")  # fmt: skip
        if sft.group_demos or sft.prefix_rollouts:
            raise ValueError(f"rollout.allocation={allocation.name} cannot be combined with sft.group_demos or "
                             "sft.prefix_rollouts (demonstrations take fixed places in equal groups)")  # fmt: skip
    if any(r.name == "laser_d" for r in config.rewards) and (allocation.name != "fixed" or hints.enabled):
        raise ValueError("the laser_d reward's monitor reads equal groups of sampled rollouts: it needs "
                         "rollout.allocation=fixed and hints.enabled=false")  # fmt: skip
    if config.replay.groups and config.critic.model is not None:
        raise ValueError("replay.groups: replayed groups have no stored values; replay needs critic.model unset")
