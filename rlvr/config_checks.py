"""The checks of a config that need the registries: every component's name and hyper-parameters against
its function's signature, the advantage estimator's needs, the demonstrations a run uses.

Kept apart from :mod:`rlvr.config` (the schema and overrides), which calls :func:`check_plugin_params`
at the end of :func:`rlvr.config.validate`, so a typo fails at load, not mid-run.
"""

from functools import partial
from pathlib import Path

from rlvr.config import RewardSpec, RunConfig
from rlvr.config_base import Component
from rlvr.errors import ConfigError


def check_plugin_params(config: RunConfig) -> None:
    """Check every registry name and every component's hyper-parameters against its signature, so a
    typo fails at load, not mid-run; fill in the defaults so the resolved config shows them all."""
    from rlvr.algos import AGGREGATIONS, ENTROPY_CONTROLLERS, KL_ESTIMATORS, POLICY_LOSSES
    from rlvr.algos.compose import KINDS, advantage_kind
    from rlvr.rewards import load_reward_plugins, reward_registry
    from rlvr.tasks import TASKS, check_task_params

    load_reward_plugins(config.plugins)
    _named("task.name", partial(TASKS.get, config.task.name))
    check_task_params(config.task.name, config.task.params())
    algo = config.algo
    kind = _named("algo.advantage", lambda: advantage_kind(algo.advantage.name))
    parts = [("advantage", KINDS[kind]), ("policy_loss", POLICY_LOSSES), ("aggregation", AGGREGATIONS),
             ("kl_estimator", KL_ESTIMATORS), ("entropy_controller", ENTROPY_CONTROLLERS)]  # fmt: skip
    for field, registry in parts:
        spec, key = getattr(algo, field), f"algo.{field}"
        _named(key, partial(registry.get, spec.name))
        full = registry.resolve(spec.name, spec.params(), key)
        setattr(algo, field, Component(name=spec.name, **full))
    for i, spec in enumerate(config.rewards):
        registry = _named(f"rewards[{i}].name", partial(reward_registry, spec.name))
        full = registry.resolve(spec.name, spec.params(), f"rewards[{i}]")
        config.rewards[i] = RewardSpec(name=spec.name, weight=spec.weight, **full)
    _check_advantage(config, kind)
    _check_sampler(config, kind)
    from rlvr.algos.sft import OFF_POLICY_LOSSES, SFT_LOSSES

    for field, registry in (("loss", SFT_LOSSES), ("off_policy_loss", OFF_POLICY_LOSSES)):
        spec, key = getattr(config.sft, field), f"sft.{field}"
        _named(key, partial(registry.get, spec.name))
        setattr(config.sft, field, Component(name=spec.name, **registry.resolve(spec.name, spec.params(), key)))
    if config.eval.verifier is not None:
        _named("eval.verifier", lambda: reward_registry(config.eval.verifier))
    if config.checkpoint.push_to_hub and not config.checkpoint.export_final:
        raise ConfigError("checkpoint.push_to_hub uploads final/: it needs checkpoint.export_final=true")
    if config.tools.env != "none":
        from rlvr.envs.rollout import ENVS

        _named("tools.env", lambda: ENVS.get(config.tools.env))
    if any(s.kind == "sft" for s in config.stages) or config.sft.mixes:  # demonstrations are needed
        _check_demos(config)


def _check_sampler(config: RunConfig, kind: str) -> None:
    """The sampler's and the rollout allocation's names and keys; a ragged allocation needs an estimator
    that takes ragged groups (registered ``ragged=True``)."""
    from rlvr.algos.compose import KINDS
    from rlvr.samplers import SAMPLERS, load_samplers
    from rlvr.samplers.allocation import ALLOCATIONS

    load_samplers()
    for owner, field, key, registry in ((config, "sampler", "sampler", SAMPLERS),
                                        (config.rollout, "allocation", "rollout.allocation", ALLOCATIONS)):  # fmt: skip
        spec = getattr(owner, field)
        _named(key, partial(registry.get, spec.name))
        setattr(owner, field, Component(name=spec.name, **registry.resolve(spec.name, spec.params(), key)))
    allocation = config.rollout.allocation
    if allocation.name != "fixed":
        name = config.algo.advantage.name
        if kind != "group" or not KINDS[kind].traits(name).get("ragged"):
            ragged = ", ".join(n for n in KINDS["group"].names() if KINDS["group"].traits(n).get("ragged"))
            raise ConfigError(
                f"rollout.allocation={allocation.name} gives prompts different group sizes, which "
                f"algo.advantage={name} does not take; use one of: {ragged}"
            )
        from rlvr.samplers.allocation import check_allocation

        check_allocation(config.rollout.allocation.params(), config.rollout.group_size)


def _check_demos(config: RunConfig) -> None:
    """A demonstrations file that exists, or a task that generates them for the run's tool."""
    from rlvr.demos.generate import check_generator

    if config.demos.no_think and not config.think.enabled:  # a file's demonstrations are used as written
        raise ConfigError(
            "demos.no_think writes generated demonstrations that skip thinking: it needs think.enabled=true"
        )
    if config.demos.path:
        if not Path(config.demos.path).expanduser().exists():
            raise ConfigError(f"demos.path: demonstrations file not found: {config.demos.path}")
        return
    _named("demos", lambda: check_generator(config.task.name, config.tools.env, config.task.params().get("parts")))


def _named(key: str, lookup):
    try:
        return lookup()
    except ConfigError as err:
        raise ConfigError(f"{key}: {err}") from None


def _check_advantage(config: RunConfig, kind: str) -> None:
    """What the estimator's kind and traits ask of the rest of the config, and a dry run on a group
    of zeros so that a hyper-parameter the estimator refuses (pass_k above the group size) fails now."""
    import torch

    from rlvr.algos.compose import KINDS

    algo, name = config.algo, config.algo.advantage.name
    if kind == "token" and config.critic.model is None:
        raise ConfigError(f"algo.advantage={name} needs a value model: set critic.model (e.g. critic.model=policy)")
    if kind == "group" and config.critic.model is not None:
        raise ConfigError(f"critic.model is set but algo.advantage={name} does not use a value model")
    if kind == "group":
        estimator = KINDS[kind].bind(name, algo.advantage.params())
        try:
            estimator(torch.zeros(2, config.rollout.group_size))
        except ValueError as err:
            raise ConfigError(
                f"algo.advantage={name}: {err} (rollout.group_size={config.rollout.group_size})"
            ) from None
    if KINDS[kind].traits(name).get("binary_rewards"):
        shaped = [f"{r.name} x {r.weight:g}" for r in config.rewards]
        shaping = algo.overlong_cache_tokens or config.tools.cost != "none" or (algo.kl_in_reward and algo.kl_coef > 0)
        if len(config.rewards) != 1 or config.rewards[0].weight != 1.0 or shaping:
            raise ConfigError(
                f"algo.advantage={name} needs 0/1 rewards: one reward with weight 1 and no "
                f"overlong, tool-cost or KL-in-reward shaping (got {' + '.join(shaped)})"
            )
