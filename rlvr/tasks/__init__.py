"""Tasks: where examples come from, split into a train and an eval side that never overlap.

A task is any object with a ``name``, a ``verifier`` (the reward that decides correctness,
used for accuracy) and ``split(which)`` (the :class:`Task` protocol).
Factories registered in :data:`TASKS` build one from keyword arguments, so a recipe names a
task and its parameters and :func:`make_task` does the rest::

    task = make_task("arithmetic", digits=2, seed=1)
    train, held_out = task.split("train"), task.split("eval")

Held-out problems are chosen by a stable hash (sha256, not Python's salted ``hash()``) of a
canonical problem key (:func:`is_eval_key`). A problem's side depends only on its key and
``eval_percent``: not on the seed, on how many problems are drawn, or in what order. Runs
with different seeds therefore share one held-out pool and never train on each other's eval
problems. Limit: the guarantee covers identical keys; near-duplicates (``3 + 5`` and
``5 + 3``, a reworded question in a file) are different problems.

Your own task registers the same way (any object with ``name`` and ``split`` will do)::

    @TASKS.register("my_task")
    def my_task(seed: int = 0) -> Task:
        return ListTask("my_task", train=[...], eval=[...])
"""

import hashlib
import inspect
import random
from collections.abc import Callable
from dataclasses import dataclass
from difflib import get_close_matches
from typing import Literal, Protocol, TypeVar, runtime_checkable

from rlvr.errors import ConfigError, DataError
from rlvr.registry import Registry
from rlvr.types import Example

Split = Literal["train", "eval"]
P = TypeVar("P")


@runtime_checkable
class Task(Protocol):
    """A source of examples with disjoint train and eval splits, deterministic given its params."""

    name: str
    verifier: str  # the registered reward that decides whether a completion is correct

    def split(self, which: Split) -> list[Example]: ...


TASKS: Registry[Callable[..., Task]] = Registry("task")


def make_task(name: str, **params: object) -> Task:
    """Build the task registered as ``name``; a bad parameter name is a :class:`ConfigError`."""
    check_task_params(name, params)
    return TASKS.get(name)(**params)


def check_task_params(name: str, params: dict[str, object]) -> None:
    """ConfigError naming the key (and the closest valid ones) unless ``params`` fit the factory."""
    signature = inspect.signature(TASKS.get(name))
    accepted = list(signature.parameters)
    for key in params:
        if key not in accepted:
            close = get_close_matches(key, accepted, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"unknown key 'task.{key}' for task {name!r}.{hint} Valid keys: {', '.join(accepted)}")
    try:
        signature.bind(**params)
    except TypeError as err:
        raise ConfigError(f"task {name!r}: {err} (set it as task.<key>)") from None


@dataclass(frozen=True)
class ListTask:
    """A task whose two splits are already built (every task in this package is one)."""

    name: str
    train: list[Example]
    eval: list[Example]
    verifier: str = "math"

    def split(self, which: Split) -> list[Example]:
        if which == "train":
            return list(self.train)
        if which == "eval":
            return list(self.eval)
        raise ConfigError(f"task {self.name!r}: unknown split {which!r} (expected 'train' or 'eval')")


def stable_hash(key: str) -> int:
    """A 64-bit hash of ``key`` that is the same in every process and Python version."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")


def is_eval_key(key: str, eval_percent: int) -> bool:
    """True for about ``eval_percent`` % of keys: those held out for evaluation."""
    return stable_hash(key) % 100 < eval_percent


def check_params(task: str, *, eval_percent: int, **sizes: int) -> None:
    """ConfigError unless 0 < eval_percent < 100 and every size is >= 0."""
    if not 0 < eval_percent < 100:
        raise ConfigError(f"task {task!r}: eval_percent must be between 1 and 99, got {eval_percent}")
    for key, value in sizes.items():
        if value < 0:
            raise ConfigError(f"task {task!r}: {key} must be >= 0, got {value}")


def draw_splits(
    task: str,
    draw: Callable[[random.Random], P],
    key: Callable[[P], str],
    *,
    train_size: int,
    eval_size: int,
    eval_percent: int,
    seed: int,
) -> tuple[list[P], list[P]]:
    """Rejection-sample ``eval_size`` distinct eval-keyed problems and ``train_size`` train-keyed ones.

    For generators whose problem space is too large to enumerate. Train problems may repeat
    (sampling with replacement, as the space is assumed large). The two splits use separate
    random streams, so ``train_size`` does not change the eval set. Gives up with a
    :class:`DataError` after a bounded number of draws when the space is too small.
    """
    eval_rng, train_rng = random.Random(f"{task}:eval:{seed}"), random.Random(f"{task}:train:{seed}")
    held: list[P] = []
    seen: set[str] = set()
    limit = 1000 + 50 * eval_size * 100 // eval_percent
    draws = 0
    while len(held) < eval_size and draws < limit:
        draws += 1
        problem = draw(eval_rng)
        k = key(problem)
        if k not in seen and is_eval_key(k, eval_percent):
            seen.add(k)
            held.append(problem)
    if len(held) < eval_size:
        raise DataError(
            f"task {task!r}: found only {len(held)} distinct eval problems in {draws} draws but "
            f"eval_size={eval_size}; the problem space is too small (lower eval_size or raise eval_percent)"
        )
    train: list[P] = []
    limit = 1000 + 50 * train_size * 100 // (100 - eval_percent)
    draws = 0
    while len(train) < train_size and draws < limit:
        draws += 1
        problem = draw(train_rng)
        if not is_eval_key(key(problem), eval_percent):
            train.append(problem)
    if len(train) < train_size:
        raise DataError(f"task {task!r}: found only {len(train)} train problems in {draws} draws")
    return train, held


# Imported last: these modules register their factories into TASKS, defined above.
from rlvr.tasks import arithmetic as _arithmetic  # noqa: E402, F401
from rlvr.tasks import code as _code  # noqa: E402, F401
from rlvr.tasks import countdown as _countdown  # noqa: E402, F401
from rlvr.tasks import dataset as _dataset  # noqa: E402, F401
from rlvr.tasks import jsonl as _jsonl  # noqa: E402, F401
from rlvr.tasks import mixture as _mixture  # noqa: E402, F401
from rlvr.tasks import multihop as _multihop  # noqa: E402, F401
from rlvr.tasks import reasoning_gym as _reasoning_gym  # noqa: E402, F401
