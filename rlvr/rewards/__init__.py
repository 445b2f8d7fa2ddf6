"""Reward functions: plain functions of the whole completion, combined by weight.

Three kinds, one signature each, so :func:`score` never special-cases a name:

- :data:`REWARDS`: ``fn(completion: Completion, example: Example, *, <hyper-parameters>) -> float``,
  one completion at a time (TRL's reward API, widened): ``completion.response`` is what the model
  wrote (tool output excluded: a policy cannot earn reward by making a tool print the answer);
  the record also has the token ids and count, the finish reason, the turns and tool calls, and
  the token budget it was sampled under. A reward may also be called with a plain string (the
  model's text), which :func:`model_text` accepts.
- :data:`GROUP_REWARDS`: ``fn(completions: list[Completion], correct: list[float], *, <hyper-parameters>)
  -> list[float]``, the G completions of one prompt with the verifier's score of each: for rewards
  relative to the group (OTC's tool efficiency, length penalties among correct answers).
- :data:`BATCH_REWARDS`: ``fn(completions: list[Completion], examples: list[Example]) -> list[float | None]``,
  a whole scoring batch in one call (TRL's batched reward files, model-based judges); an ``is_async``
  attribute marks a coroutine function, awaited concurrently with the batch's other async rewards.

A reward named ``file.py:function`` is a user's TRL-, verl- or rlvr-style function loaded from that
file (:mod:`rlvr.rewards.adapters`); for those ``None`` means "not applicable" (kept as NaN in the
term's values, left out of totals and means, never correct).

Built in: ``math`` (the extracted answer equals the gold answer), ``boxed_format`` (a non-empty
``\\boxed{}``), ``countdown``, ``exact_match``, ``multiple_choice`` (a letter or the option's text,
:mod:`rlvr.rewards.choice`), ``json_parses`` and ``json_schema`` (the final JSON against a JSON
Schema, :mod:`rlvr.rewards.json_output`); shaping terms ``overlong`` (DAPO), ``tool_calls``
(a cost per call) and the group reward ``otc`` (OTC-GRPO). Hyper-parameters are the recipe entry's
other keys (``{name: overlong, weight: 1.0, cache_tokens: 12}``), checked against the signature.

A reward that raises or returns a non-finite value is a bug to fix, not a zero: unlike
verifiers' Rubric, :func:`score` stops with a :class:`RewardError` naming the reward, the
example and the completion. A wrong or unparsable answer is a 0.0, not an exception.

Add your own in a file of your project::

    from rlvr.rewards import REWARDS
    from rlvr.types import Completion, Example

    @REWARDS.register("short")
    def short(completion: Completion, example: Example, *, chars: int = 400) -> float:
        return 1.0 if len(completion.response) < chars else 0.0

then ``plugins: [my_rewards.py]`` in the recipe (or ``load_reward_plugins``) before the rewards
are looked up; the same works for ``rlvr.tasks.TASKS``.
"""

import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from math import isfinite, isnan
from numbers import Real
from pathlib import Path
from typing import Any

from rlvr.errors import ConfigError, RewardError, one_line
from rlvr.registry import Registry
from rlvr.rewards import adapters
from rlvr.types import Completion, Example

RewardFn = Callable[[Completion, Example], float]
GroupRewardFn = Callable[[list[Completion], list[float]], list[float]]
BatchRewardFn = Callable[[list[Completion], list[Example]], list[float | None]]

REWARDS: Registry[RewardFn] = Registry("reward")
GROUP_REWARDS: Registry[GroupRewardFn] = Registry("group reward")
BATCH_REWARDS: Registry[BatchRewardFn] = Registry("batch reward")


def model_text(completion: "Completion | str") -> str:
    """What the model wrote: ``completion.response`` (a plain string is taken as it is)."""
    return completion if isinstance(completion, str) else completion.response


def reward_registry(name: str) -> Registry:
    """The registry (per completion, per group or per batch) that holds reward ``name``; a
    ``file.py:function`` reference is loaded and registered first."""
    if adapters.is_file_reward(name):
        register_file_reward(name)
    for registry in (REWARDS, GROUP_REWARDS, BATCH_REWARDS):
        if name in registry:
            return registry
    try:
        REWARDS.get(name)
    except ConfigError as err:
        raise ConfigError(f"{err}, {', '.join(GROUP_REWARDS.names())} (group rewards)") from None
    return REWARDS


_FILE_SOURCES: dict[str, str] = {}  # a file reward's name -> the file it was loaded from


def register_file_reward(ref: str) -> None:
    """Load ``file.py:function`` and register it, adapted to its style (TRL, verl or rlvr), as ``ref``
    (again when the same relative name now points at another file)."""
    source = adapters.source_of(ref)
    if _FILE_SOURCES.get(ref) == source and any(ref in registry for registry in (REWARDS, BATCH_REWARDS)):
        return
    for registry in (REWARDS, BATCH_REWARDS):
        registry.unregister(ref)
    fn = adapters.load_function(ref)
    _FILE_SOURCES[ref] = source
    style = adapters.style_of(fn, ref)
    if style == "trl":
        BATCH_REWARDS.register(ref, none_allowed=True)(adapters.trl_batch(fn))
    elif style == "verl":
        REWARDS.register(ref, none_allowed=True)(adapters.verl_reward(fn))
    else:
        REWARDS.register(ref)(fn)


def bind_reward(name: str, params: dict | None = None, key: str = "rewards") -> "RewardTerm":
    """Reward ``name`` of any kind as a weight-1 term with ``params`` bound (a verifier, for eval)."""
    registry = reward_registry(name)
    fn = registry.bind(name, params or {}, key)
    kind = "group" if registry is GROUP_REWARDS else "batch" if registry is BATCH_REWARDS else "completion"
    traits = registry.traits(name)
    return RewardTerm(name, 1.0, fn, kind, traits.get("none_allowed", False), traits)


@dataclass(frozen=True)
class RewardTerm:
    """One term of the mix: ``weight x fn(...)``, with the function's hyper-parameters bound."""

    name: str
    weight: float
    fn: Callable
    kind: str  # "completion" | "group" | "batch": which registry's signature fn has
    none_allowed: bool = False  # None means "not applicable" (TRL's convention; file rewards)
    traits: dict = field(default_factory=dict)  # from registration: vote_key (maj@k's answer; None: no vote), ...

    @property
    def per_group(self) -> bool:
        return self.kind == "group"


def reward_terms(specs: Sequence) -> list[RewardTerm]:
    """Terms from specs: ``(name, weight)``, ``(name, weight, params)`` or objects with ``name``,
    ``weight`` and ``params()`` (a recipe's ``RewardSpec``). Unknown names, a reward listed twice,
    a bad hyper-parameter or a non-finite weight are :class:`ConfigError`."""
    terms = []
    for i, spec in enumerate(specs):
        if isinstance(spec, RewardTerm):
            terms.append(spec)
            continue
        if isinstance(spec, tuple):
            name, weight, params = (*spec, {})[:3]
        else:
            name, weight, params = spec.name, spec.weight, spec.params()
        if not isfinite(weight):
            raise ConfigError(f"rewards: weight of {name!r} must be finite, got {weight}")
        terms.append(replace(bind_reward(name, params, f"rewards[{i}]"), weight=float(weight)))
    names = [t.name for t in terms]
    if len(set(names)) != len(names):
        raise ConfigError(f"rewards: each reward may be listed once, got {names}")
    return terms


def as_completion(item: "Completion | str", example: Example) -> Completion:
    """A plain string becomes a single-turn completion of ``example`` with no token record."""
    if isinstance(item, Completion):
        return item
    return Completion(example, item, [], [], [], [], "stop")


def score(
    completions: "Sequence[Completion | str]",
    examples: list[Example] | None,
    specs: Sequence,
    *,
    verifier: str | None = None,
    group_size: "int | Sequence[int] | None" = None,
) -> tuple[list[float], dict[str, list[float]]]:
    """Weighted total per completion and each reward's unweighted values.

    ``completions[i]`` answers ``examples[i]`` (None: each completion's own ``example``). Returns
    ``(totals, components)`` with ``totals[i] = sum(weight * components[name][i])``. With
    ``verifier``, ``components`` also holds the verifier's values (weight 0 unless it is a term),
    which group rewards receive as ``correct``; they need ``group_size`` (completions come in
    consecutive groups; a list gives each group's size, for ragged groups). Unknown reward names
    fail (ConfigError) before any reward runs.
    """
    examples = examples if examples is not None else [c.example for c in completions]  # type: ignore[union-attr]
    if len(completions) != len(examples):
        raise ValueError(f"score: {len(completions)} completions but {len(examples)} examples")
    items = [as_completion(c, ex) for c, ex in zip(completions, examples, strict=True)]
    terms = reward_terms(specs)
    if verifier is not None and verifier not in {t.name for t in terms}:
        check = replace(bind_reward(verifier, key="eval.verifier"), weight=0.0)
    else:
        check = None
    components: dict[str, list[float]] = {}
    ungrouped = [t for t in terms if not t.per_group] + ([check] if check is not None else [])
    components |= _batch_values([t for t in ungrouped if t.kind == "batch"], items, examples)
    for term in ungrouped:
        if term.kind == "completion":
            components[term.name] = reward_values(term, items, examples)
    for term in terms:
        if term.per_group:
            components[term.name] = _group_values(term, items, components, verifier, group_size)
    totals = [0.0] * len(items)
    for term in terms:
        totals = [t if isnan(v) else t + term.weight * v for t, v in zip(totals, components[term.name], strict=True)]
    return totals, components


def reward_values(term: RewardTerm, items: list[Completion], examples: list[Example]) -> list[float]:
    """One term's value for each completion (NaN: not applicable); RewardError naming the sample on a failure."""
    if term.kind == "batch":
        return _batch_values([term], items, examples)[term.name]
    if term.kind == "group":
        raise ConfigError(f"reward {term.name!r} scores whole groups: it cannot decide correctness alone")
    return [call_reward(term.name, term.fn, c, ex, term.none_allowed) for c, ex in zip(items, examples, strict=True)]


def _batch_values(terms: list[RewardTerm], items: list[Completion], examples: list[Example]) -> dict[str, list[float]]:
    """Each batch term over the whole batch: sync ones in turn, async ones concurrently."""
    outputs: dict[str, Any] = {}
    waiting = []
    for term in terms:
        try:
            out = term.fn(items, examples)
        except Exception as e:
            raise _batch_error(term.name, e, items) from e
        if getattr(term.fn, "is_async", False) or inspect.isawaitable(out):
            waiting.append((term, out))
        else:
            outputs[term.name] = out
    if waiting:
        for (term, _), out in zip(waiting, adapters.run_async([c for _, c in waiting]), strict=True):
            if isinstance(out, BaseException):
                raise _batch_error(term.name, out, items) from out
            outputs[term.name] = out
    values = {}
    for term in terms:
        out = outputs[term.name]
        if isinstance(out, str | bytes) or not hasattr(out, "__len__") or len(out) != len(items):
            got = f"{len(out)} values" if hasattr(out, "__len__") else type(out).__name__
            raise RewardError(f"reward {term.name!r} returned {got} for a batch of {len(items)} completions")
        values[term.name] = [
            _checked(term.name, v, _where(ex, c), term.none_allowed)
            for v, c, ex in zip(list(out), items, examples, strict=True)
        ]
    return values


def _batch_error(name: str, e: BaseException, items: list[Completion]) -> RewardError:
    """A batch reward cannot say which completion broke it: the batch's first one is named."""
    message = one_line(e)
    first = f" (first: {_where(items[0].example, items[0])})" if items else ""
    return RewardError(f"reward {name!r} raised {type(e).__name__}: {message} on a batch of {len(items)}{first}")


def _where(example: Example, completion: Completion) -> str:
    return f"on example {example.id!r}, completion {completion.response[:200]!r}"


def group_sizes(count: int, group_size) -> list[int] | None:
    """Each consecutive group's size: ``group_size`` an int (equal groups) or a list (ragged); None
    when they do not tile ``count`` completions."""
    if not group_size:
        return None
    sizes = [group_size] * (count // group_size) if isinstance(group_size, int) else list(group_size)
    return sizes if sum(sizes) == count and all(s > 0 for s in sizes) else None


def _group_values(term: RewardTerm, items: list[Completion], components, verifier, group_size) -> list[float]:
    sizes = group_sizes(len(items), group_size)
    if verifier is None or sizes is None:
        raise ConfigError(f"reward {term.name!r} scores whole groups: score() needs verifier= and group_size=")
    values: list[float] = []
    start = 0
    for size in sizes:
        group = items[start : start + size]
        correct = [0.0 if isnan(v) else v for v in components[verifier][start : start + size]]
        start += size
        where = f"on example {group[0].example.id!r}"
        try:
            out = list(term.fn(group, correct))
        except Exception as e:
            message = one_line(e)
            raise RewardError(f"reward {term.name!r} raised {type(e).__name__}: {message} {where}") from e
        if len(out) != len(group):
            raise RewardError(f"reward {term.name!r} returned {len(out)} values for a group of {len(group)} {where}")
        values += [
            _checked(term.name, v, f"{where}, completion {c.response[:200]!r}") for v, c in zip(out, group, strict=True)
        ]
    return values


def call_reward(name: str, fn: RewardFn, completion: Completion, example: Example, none_allowed: bool = False) -> float:
    """``fn(completion, example)`` as a float; a raise or a non-number is a RewardError naming the sample
    (``none_allowed``: a None is NaN, "not applicable")."""
    where = _where(example, completion)
    try:
        value = fn(completion, example)
    except Exception as e:
        message = one_line(e)
        raise RewardError(f"reward {name!r} raised {type(e).__name__}: {message} {where}") from e
    return _checked(name, value, where, none_allowed)


def _checked(name: str, value: Any, where: str, none_allowed: bool = False) -> float:
    if value is None and none_allowed:
        return adapters.NOT_APPLICABLE
    if not isinstance(value, Real):  # int, float, bool and numpy scalars pass; None, str, tensors do not
        raise RewardError(f"reward {name!r} returned {type(value).__name__} {value!r:.50} (not a number) {where}")
    if not isfinite(value):
        raise RewardError(f"reward {name!r} returned {value} {where}")
    return float(value)


def load_reward_plugins(module_paths: list[str]) -> None:
    """Import user modules (``pkg.module`` or ``path/to/file.py``) so their rewards and tasks register.

    Importing the same file or module twice is a no-op. A file that does not exist, a module
    that cannot be found, or a plugin that fails while importing is a :class:`ConfigError`.
    """
    for spec in module_paths:
        import_plugin(spec)


def import_plugin(spec: str):
    """The module of plugin ``spec`` (a file path or a module name), imported once; ConfigError if it fails."""
    if adapters.is_path(spec):
        return _load_file(spec)
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as e:
        raise ConfigError(f"reward plugin module {spec!r} not found ({e})") from e
    except Exception as e:
        raise ConfigError(f"reward plugin {spec!r} failed to import: {type(e).__name__}: {e}") from e


def _load_file(path: str):
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise ConfigError(f"reward plugin file not found: {path}")
    module_name = f"rlvr_plugin_{file.stem}_{hashlib.sha256(str(file).encode()).hexdigest()[:12]}"
    for loaded in list(sys.modules.values()):
        if getattr(loaded, "__file__", None) == str(file):
            return loaded
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise ConfigError(f"reward plugin {path} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[module_name]
        raise ConfigError(f"reward plugin {path} failed to import: {type(e).__name__}: {e}") from e
    return module


# Imported last: these modules register into REWARDS, defined above.
from rlvr.rewards import costs as _costs  # noqa: E402, F401
from rlvr.rewards import countdown as _countdown  # noqa: E402, F401
from rlvr.rewards import exact_match as _exact_match  # noqa: E402, F401
from rlvr.rewards import format as _format  # noqa: E402, F401
from rlvr.rewards import laser_d as _laser_d  # noqa: E402, F401
from rlvr.rewards import length as _length  # noqa: E402, F401
from rlvr.rewards import think as _think  # noqa: E402, F401
from rlvr.rewards.math import answers_match, extract_answer  # noqa: E402

__all__ = [
    "BATCH_REWARDS",
    "GROUP_REWARDS",
    "REWARDS",
    "RewardFn",
    "RewardTerm",
    "answers_match",
    "bind_reward",
    "call_reward",
    "extract_answer",
    "load_reward_plugins",
    "reward_values",
    "model_text",
    "reward_terms",
    "score",
]
from rlvr.rewards import choice as _choice  # noqa: E402, F401
from rlvr.rewards import code as _code  # noqa: E402, F401
from rlvr.rewards import json_output as _json_output  # noqa: E402, F401
from rlvr.rewards import reasoning_gym as _reasoning_gym  # noqa: E402, F401
