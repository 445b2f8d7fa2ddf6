"""The reward mix a run scores with: the recipe's ``rewards`` list plus the terms its shorthands
stand for, resolved once at set-up (so collection and the trainer never special-case them).

- ``algo.overlong_cache_tokens: N`` (N > 0) adds ``{name: overlong, weight: 1, cache_tokens: N}``;
- ``tools.cost: per_call`` adds ``{name: tool_calls, weight: tools.cost_coef}``;
- ``tools.cost: otc`` adds ``{name: otc, weight: <the verifier's weight>, c: tools.otc_c}``.

A shorthand whose reward is already listed by name adds nothing (the explicit entry wins).
"""

from rlvr.errors import ConfigError
from rlvr.rewards import RewardTerm, bind_reward, reward_terms


def verifier_reward(config, verifier: str) -> RewardTerm:
    """The verifier as evaluation calls it: bound with the keys the recipe's reward entry gives it,
    or with its defaults when it is not among the rewards."""
    spec = next((s for s in config.rewards if s.name == verifier), None)
    return bind_reward(verifier, spec.params() if spec is not None else {}, "eval.verifier")


def reward_mix(config, verifier: str) -> list[RewardTerm]:
    """The terms of ``config`` (a RunConfig) with ``verifier`` the reward that decides correctness."""
    specs = [(s.name, s.weight, s.params()) for s in config.rewards]
    listed = {s.name for s in config.rewards}
    if config.algo.overlong_cache_tokens and "overlong" not in listed:
        specs.append(("overlong", 1.0, {"cache_tokens": config.algo.overlong_cache_tokens}))
    tools = config.tools
    if tools.cost == "per_call" and "tool_calls" not in listed:
        specs.append(("tool_calls", tools.cost_coef, {}))
    if tools.cost == "otc" and "otc" not in listed:
        weight = sum(s.weight for s in config.rewards if s.name == verifier)
        if weight == 0:
            raise ConfigError(f"tools.cost=otc scales the verifier's reward, but {verifier!r} is not among the rewards")
        specs.append(("otc", weight, {"c": tools.otc_c}))
    return reward_terms(specs)
