"""reasoning-gym's procedural datasets as a task (Stojanovski et al. 2025, github.com/open-thought/reasoning-gym).

reasoning-gym (``pip install 'rlvr[reasoning-gym]'``, imported only when this task or its reward is
used) has 100+ generators (arithmetic, algebra, logic, games, graphs, ciphers, ARC, ...), each with
its own verifier. One dataset (``dataset: leg_counting``) or a weighted mixture (``datasets:
{chain_sum: 3, leg_counting: 1}``); ``config`` holds the generator's options (difficulty: ``min_terms``,
``max_digits``, ...), for a mixture keyed by dataset name. The prompt is reasoning-gym's question
plus ``instruction``; the ``reasoning_gym`` reward (:mod:`rlvr.rewards.reasoning_gym`) reads the
answer the instruction asks for (``<answer>...</answer>``, else the last ``\\boxed{}``) and returns
that dataset's own ``score_answer``.

Splits. Generator item ``i`` of seed ``s`` is drawn from ``Random(s + i)`` (so seeds ``s`` and
``s + 1`` share all but one item). Each dataset gets an eval seed ``e`` in ``[0, 2**30)`` derived
from (dataset name, ``seed``) and the train seed ``e + 2**30``: the two index ranges never meet while a
split draws under 2**30 items, and every seed stays below 2**32 (a generator seeds numpy with it).
Then, by text: eval keeps the first ``eval_size`` distinct questions, train drops any item whose
question is in eval and draws on until it has ``train_size`` (train may repeat a question).

Mixtures. Not reasoning-gym's ``CompositeDataset``, which draws the source of each item at random
(so a 3:1 mix of 100 holds 75 +- 4 of the first): each source gets exactly its share by largest
remainder (3:1 of 100 -> 75 and 25; ties go to the source listed first), from its own seeds, and
the split is shuffled by a generator seeded from ``seed``.

``meta`` carries what the verifier needs, as JSON (:func:`to_json`): ``entry`` (question, answer,
metadata), ``source_dataset``, ``config`` (the generator options: some verifiers read them, e.g.
``decimal_arithmetic``'s precision), and ``seed``/``index`` (where the item came from). Tuples, sets
and dicts with non-string keys are tagged (``{"__tuple__": [...]}``) so :func:`from_json` gives the
verifier back the very objects it compares with: ARC's verifier compares grids as tuples of tuples,
and a plain JSON round trip (tuples -> lists) would score the right grid 0.05.

Limits: ``seed`` moves eval too, so runs on different task seeds may train on each other's eval
questions (repeat a run with ``train.seed``, not ``task.seed``); dedup is by exact question text
(a reworded duplicate counts as new); a dataset whose space has fewer than ``eval_size`` distinct
questions is a DataError; generation runs in-process with no timeout (a few generators take
seconds per item).
"""

import json
import random
from dataclasses import fields
from difflib import get_close_matches
from math import floor, isfinite
from typing import Any

from rlvr.errors import ConfigError, DataError
from rlvr.tasks import TASKS, ListTask, Task, stable_hash
from rlvr.types import Example

INSTALL_HINT = "pip install 'rlvr[reasoning-gym]'"
INSTRUCTION = "\n\nGive only the final answer inside <answer></answer> tags."
SPLIT_OFFSET = 2**30  # train seed = eval seed + this; eval seeds lie in [0, SPLIT_OFFSET)
RESERVED = ("seed", "size")  # generator options the task sets itself


def import_reasoning_gym():
    """The ``reasoning_gym`` module; a ConfigError naming the extra to install when it is missing."""
    try:
        import reasoning_gym
    except ImportError as err:
        raise ConfigError(f"task 'reasoning_gym' needs the reasoning-gym package ({err}): {INSTALL_HINT}") from None
    return reasoning_gym


def dataset_names() -> list[str]:
    """Every dataset reasoning-gym registers, sorted (``composite`` left out: use ``datasets``)."""
    from reasoning_gym.factory import DATASETS

    return sorted(name for name in DATASETS if name != "composite")


def check_dataset_name(name: object, key: str) -> str:
    """``name`` if reasoning-gym has it; else a ConfigError naming ``key`` and the closest names."""
    names = dataset_names()
    if isinstance(name, str) and name in names:
        return name
    close = get_close_matches(str(name), names, n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(
        f"{key}: unknown reasoning-gym dataset {name!r}.{hint} ({len(names)} datasets; list them with: python -c "
        '"from reasoning_gym.factory import DATASETS; print(sorted(DATASETS))")'
    )


def make_generator(name: str, options: dict[str, Any], *, seed: int, size: int, key: str):
    """reasoning-gym's dataset ``name`` with ``options``; a ConfigError naming ``key.<option>`` if it rejects them."""
    rg = import_reasoning_gym()
    from reasoning_gym.factory import DATASETS

    if not isinstance(options, dict):
        raise ConfigError(f"{key} must be a mapping of generator options, got {options!r:.80}")
    valid = [f.name for f in fields(DATASETS[name][1]) if f.name not in RESERVED]
    for option in options:
        if option in RESERVED:
            raise ConfigError(f"{key}.{option}: set by the task (use task.seed, task.train_size, task.eval_size)")
        if option not in valid:
            close = get_close_matches(str(option), valid, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(
                f"{key}.{option}: not an option of reasoning-gym dataset {name!r}.{hint} Valid: {', '.join(valid)}"
            )
    try:
        return rg.create_dataset(name, seed=seed, size=size, **options)
    except Exception as err:  # the dataclass's validate() asserts; a wrong type fails inside it
        message = " ".join(str(err).split())[:200] or type(err).__name__
        raise ConfigError(f"{key}: reasoning-gym dataset {name!r} rejects options {options}: {message}") from None


def mixture(dataset: str | None, datasets: dict[str, float] | None) -> dict[str, float]:
    """The sources and their weights from the two keys (exactly one must be set)."""
    if (dataset is None) == (datasets is None):
        raise ConfigError(
            "task 'reasoning_gym': set exactly one of task.dataset (a name) or task.datasets (name: weight)"
        )
    if dataset is not None:
        return {check_dataset_name(dataset, "task.dataset"): 1.0}
    if not isinstance(datasets, dict) or not datasets:
        raise ConfigError(f"task.datasets must be a non-empty mapping of dataset name to weight, got {datasets!r:.80}")
    for name, weight in datasets.items():
        check_dataset_name(name, "task.datasets")
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not isfinite(weight) or weight <= 0:
            raise ConfigError(f"task.datasets.{name}: the weight must be a positive number, got {weight!r}")
    return {name: float(weight) for name, weight in datasets.items()}


def shares(weights: dict[str, float], total: int) -> dict[str, int]:
    """``total`` split in proportion to ``weights`` by largest remainder (Hamilton's method); ties: listed first."""
    norm = sum(weights.values())
    quotas = {name: total * w / norm for name, w in weights.items()}
    counts = {name: floor(q) for name, q in quotas.items()}
    order = sorted(quotas, key=lambda name: -(quotas[name] - counts[name]))  # stable: ties keep listed order
    for name in order[: total - sum(counts.values())]:
        counts[name] += 1
    return counts


def eval_seed(name: str, seed: int) -> int:
    """The eval generator seed of dataset ``name`` for task seed ``seed`` (train's is this + 2**30)."""
    return stable_hash(f"reasoning_gym:{name}:{seed}") % SPLIT_OFFSET


def to_json(value: Any, where: str = "entry") -> Any:
    """``value`` as JSON types, with tuples, sets and dicts with non-string keys tagged so :func:`from_json`
    restores them; numpy scalars become Python numbers. Anything else is a DataError naming ``where``."""
    if value is None or isinstance(value, bool | int | float | str):
        return value.item() if hasattr(value, "item") else value  # numpy.float64 / numpy.str_ subclass these
    if isinstance(value, list):
        return [to_json(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, tuple):
        return {"__tuple__": [to_json(v, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, set | frozenset):
        items = sorted(value, key=repr)  # a stable order for stable files
        return {"__set__" if isinstance(value, set) else "__frozenset__": [to_json(v, where) for v in items]}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {k: to_json(v, f"{where}.{k}") for k, v in value.items()}
        return {"__dict__": [[to_json(k, where), to_json(v, f"{where}.{k}")] for k, v in value.items()]}
    if hasattr(value, "item") and hasattr(value, "dtype") and getattr(value, "shape", None) == ():
        return value.item()  # other numpy scalars (numpy.int64 is no int subclass)
    raise DataError(f"{where}: a {type(value).__name__} value that rlvr cannot store as JSON: {value!r:.80}")


_TAGS = {"__tuple__": tuple, "__set__": set, "__frozenset__": frozenset}


def from_json(value: Any) -> Any:
    """The inverse of :func:`to_json` (also after a ``json.dumps``/``json.loads`` round trip)."""
    if isinstance(value, list):
        return [from_json(v) for v in value]
    if isinstance(value, dict):
        if len(value) == 1:
            ((tag, items),) = value.items()
            if tag in _TAGS and isinstance(items, list):
                return _TAGS[tag](from_json(v) for v in items)
            if tag == "__dict__" and isinstance(items, list):
                return {from_json(k): from_json(v) for k, v in items}
        return {k: from_json(v) for k, v in value.items()}
    return value


def generate(
    name: str, generator, seed: int, count: int, skip: set[str], key: str, distinct: bool = False
) -> list[tuple[int, dict]]:
    """``count`` (index, item) pairs from index 0 on, skipping questions in ``skip`` (and, ``distinct``,
    repeats); at most 10 x count + 100 draws (a space too small is a DataError, not a hang)."""
    out, skip, index, limit = [], set(skip), 0, 10 * count + 100
    while len(out) < count and index < limit:
        item = _item(name, generator, seed, index)
        if item["question"] not in skip:
            out.append((index, item))
            if distinct:
                skip.add(item["question"])
        index += 1
    if len(out) < count:
        kind = "distinct questions" if distinct else "usable questions"
        raise DataError(
            f"{key}: reasoning-gym dataset {name!r} gave only {len(out)} {kind} in {index} draws for "
            f"{count} wanted; its problem space is too small (lower the size or widen its options in task.config)"
        )
    return out


def draw_eval(name: str, generator, seed: int, count: int) -> list[tuple[int, dict]]:
    """The first ``count`` distinct questions from index 0 on (a repeat is skipped)."""
    return generate(name, generator, seed, count, set(), "task.eval_size", distinct=True)


def _item(name: str, generator, seed: int, index: int) -> dict:
    try:
        item = generator[index]
    except Exception as err:
        raise DataError(
            f"reasoning-gym dataset {name!r} failed to generate item {index} of seed {seed}: "
            f"{type(err).__name__}: {err}"
        ) from err
    if not isinstance(item, dict) or not isinstance(item.get("question"), str) or "metadata" not in item:
        raise DataError(f"reasoning-gym dataset {name!r} item {index} of seed {seed} has no question/metadata")
    return item


@TASKS.register("reasoning_gym")
def reasoning_gym_task(
    dataset: str | None = None,
    datasets: dict[str, float] | None = None,
    config: dict[str, Any] | None = None,
    train_size: int = 1000,
    eval_size: int = 200,
    seed: int = 0,
    instruction: str = INSTRUCTION,
) -> Task:
    """reasoning-gym questions from ``dataset`` or the ``datasets`` mixture, options from ``config``."""
    for key, value in (("train_size", train_size), ("eval_size", eval_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"task.{key} must be an integer >= 0, got {value!r}")
    import_reasoning_gym()
    weights = mixture(dataset, datasets)
    options = _options(weights, config or {}, single=dataset is not None)
    train_counts, eval_counts = shares(weights, train_size), shares(weights, eval_size)
    eval_items, train_items = [], []
    for name in weights:
        key = "task.config" if dataset is not None else f"task.config.{name}"
        e_seed = eval_seed(name, seed)
        gen = make_generator(name, options[name], seed=e_seed, size=10 * eval_counts[name] + 100, key=key)
        eval_items += [(name, e_seed, i, item) for i, item in draw_eval(name, gen, e_seed, eval_counts[name])]
    held = {item["question"] for *_, item in eval_items}
    for name in weights:
        key = "task.config" if dataset is not None else f"task.config.{name}"
        t_seed = eval_seed(name, seed) + SPLIT_OFFSET
        gen = make_generator(name, options[name], seed=t_seed, size=10 * train_counts[name] + 100, key=key)
        pairs = generate(name, gen, t_seed, train_counts[name], held, "task.train_size")
        train_items += [(name, t_seed, i, item) for i, item in pairs]
    random.Random(f"reasoning_gym:order:eval:{seed}").shuffle(eval_items)
    random.Random(f"reasoning_gym:order:train:{seed}").shuffle(train_items)
    return ListTask(
        "reasoning_gym",
        train=[_example(*it, options, instruction, "train") for it in train_items],
        eval=[_example(*it, options, instruction, "eval") for it in eval_items],
        verifier="reasoning_gym",
    )


def _options(weights: dict[str, float], config: dict[str, Any], *, single: bool) -> dict[str, dict[str, Any]]:
    """Generator options per source: ``config`` itself for one dataset, ``config[name]`` for a mixture."""
    if not isinstance(config, dict):
        raise ConfigError(f"task.config must be a mapping of generator options, got {config!r:.80}")
    if single:
        return {next(iter(weights)): dict(config)}
    for name in config:
        if name not in weights:
            raise ConfigError(
                f"task.config.{name}: not one of task.datasets ({', '.join(weights)}); with a mixture, "
                "task.config maps a dataset name to its options"
            )
    return {name: dict(config.get(name) or {}) for name in weights}


def _example(name: str, seed: int, index: int, item: dict, options, instruction: str, split: str) -> Example:
    where = f"reasoning-gym dataset {name!r} item {index} of seed {seed}"
    entry = {"question": item["question"], "answer": item.get("answer"), "metadata": item["metadata"]}
    answer = entry["answer"]
    return Example(
        id=f"{name}-{split}-{index}",
        prompt=[{"role": "user", "content": item["question"] + instruction}],
        answer="" if answer is None else answer if isinstance(answer, str) else json.dumps(to_json(answer, where)),
        meta={
            "source_dataset": name,
            "entry": to_json(entry, where),
            "config": to_json(options[name], f"task.config of {name!r}"),
            "seed": seed,
            "index": index,
        },
    )
