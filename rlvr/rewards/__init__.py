"""Reward functions: plain ``fn(completion, example) -> float``, combined by weight.

Every reward has the one signature :data:`RewardFn` (TRL's reward API, one completion at a
time), so :func:`score` never special-cases a name. Built in: ``math`` (the extracted answer
equals the gold answer), ``boxed_format`` (the completion has a non-empty ``\\boxed{}``),
``countdown`` (the boxed expression reaches the target with the given numbers).

A reward that raises or returns a non-finite value is a bug to fix, not a zero: unlike
verifiers' Rubric, :func:`score` stops with a :class:`RewardError` naming the reward, the
example and the completion. A wrong or unparsable answer is a 0.0, not an exception.

Add your own in a file of your project::

    from rlvr.rewards import REWARDS
    from rlvr.types import Example

    @REWARDS.register("short")
    def short(completion: str, example: Example) -> float:
        return 1.0 if len(completion) < 400 else 0.0

then ``load_reward_plugins(["my_rewards.py"])`` (or a dotted module name) before the
recipe's rewards are looked up; the same works for ``rlvr.tasks.TASKS``.
"""

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable
from math import isfinite
from numbers import Real
from pathlib import Path

from rlvr.errors import ConfigError, RewardError
from rlvr.registry import Registry
from rlvr.types import Example

RewardFn = Callable[[str, Example], float]

REWARDS: Registry[RewardFn] = Registry("reward")


def score(
    completions: list[str], examples: list[Example], specs: list[tuple[str, float]]
) -> tuple[list[float], dict[str, list[float]]]:
    """Weighted total per completion and each reward's unweighted values.

    ``examples[i]`` is the example ``completions[i]`` answers. Returns ``(totals,
    components)`` with ``totals[i] = sum(weight * components[name][i])``. Unknown reward
    names fail (ConfigError) before any reward runs.
    """
    if len(completions) != len(examples):
        raise ValueError(f"score: {len(completions)} completions but {len(examples)} examples")
    names = [name for name, _ in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"rewards: each reward may be listed once, got {names}")
    fns = [REWARDS.get(name) for name in names]
    totals = [0.0] * len(completions)
    components: dict[str, list[float]] = {}
    for (name, weight), fn in zip(specs, fns, strict=True):
        if not isfinite(weight):
            raise ConfigError(f"rewards: weight of {name!r} must be finite, got {weight}")
        values = [_call(name, fn, c, ex) for c, ex in zip(completions, examples, strict=True)]
        components[name] = values
        totals = [t + weight * v for t, v in zip(totals, values, strict=True)]
    return totals, components


def _call(name: str, fn: RewardFn, completion: str, example: Example) -> float:
    where = f"on example {example.id!r}, completion {completion[:200]!r}"
    try:
        value = fn(completion, example)
    except Exception as e:
        message = " ".join(str(e).split())[:200]
        raise RewardError(f"reward {name!r} raised {type(e).__name__}: {message} {where}") from e
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
        if spec.endswith(".py") or "/" in spec or "\\" in spec:
            _load_file(spec)
            continue
        try:
            importlib.import_module(spec)
        except ModuleNotFoundError as e:
            raise ConfigError(f"reward plugin module {spec!r} not found ({e})") from e
        except Exception as e:
            raise ConfigError(f"reward plugin {spec!r} failed to import: {type(e).__name__}: {e}") from e


def _load_file(path: str) -> None:
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise ConfigError(f"reward plugin file not found: {path}")
    module_name = f"rlvr_plugin_{file.stem}_{hashlib.sha256(str(file).encode()).hexdigest()[:12]}"
    if any(getattr(m, "__file__", None) == str(file) for m in list(sys.modules.values())):
        return
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


# Imported last: these modules register into REWARDS, defined above.
from rlvr.rewards import countdown as _countdown  # noqa: E402, F401
from rlvr.rewards import exact_match as _exact_match  # noqa: E402, F401
from rlvr.rewards import format as _format  # noqa: E402, F401
from rlvr.rewards.math import answers_match, extract_answer  # noqa: E402

__all__ = ["REWARDS", "RewardFn", "answers_match", "extract_answer", "load_reward_plugins", "score"]
