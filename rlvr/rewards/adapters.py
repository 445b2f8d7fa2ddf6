"""Reward functions from the files users already have: TRL's, verl's, or rlvr's own, unchanged.

A reward named ``path/to/file.py:function`` (or ``package.module:function``) is loaded from that
file and adapted by its signature, then registered under that name, so a recipe says::

    rewards:
      - {name: my_rewards.py:accuracy_reward, weight: 1.0}   # TRL: f(prompts, completions, **columns)
      - {name: my_score.py:compute_score}                   # verl: compute_score(data_source, solution_str, ...)
    eval: {verifier: my_score.py:compute_score}

- **TRL** (a ``completions`` parameter): called once per scoring batch with keyword lists, as
  ``GRPOTrainer`` calls it: ``prompts`` (the dataset's prompt: a string, or messages),
  ``completions`` (strings for string prompts, else ``[{"role": "assistant", "content": ...}]``),
  ``completion_ids``, and one list per example column (``example.meta``; ``answer`` too when no
  column has that name). Only the names the function accepts are passed unless it takes
  ``**kwargs``. ``async def`` functions are awaited, all of a batch's async rewards concurrently.
- **verl** (a ``solution_str`` parameter): ``compute_score(data_source=, solution_str=,
  ground_truth=, extra_info=)`` per completion, with ``data_source`` and ``extra_info`` from the
  example's columns and ``ground_truth`` from ``reward_model.ground_truth`` (else the gold answer).
  A dict result gives its ``"score"``.
- **rlvr** (``completion`` and ``example`` parameters): registered as it is.

``None`` from a TRL or verl function means "not applicable" (TRL's convention): that term adds
nothing to the completion's total, is left out of the term's mean in the metrics, and does not
count as correct. ``solution_str`` and ``completions`` hold what the model wrote, never tool
output. Limits: file rewards take no hyper-parameters besides ``weight``; TRL's ``trainer_state``,
``log_extra`` and ``log_metric`` arguments are not passed.
"""

import asyncio
import inspect
from pathlib import Path
from typing import Any

from rlvr.errors import ConfigError
from rlvr.types import Completion, Example

NOT_APPLICABLE = float("nan")  # what a None becomes in a term's values


def is_file_reward(name: str) -> bool:
    """True for ``file.py:function`` and ``package.module:function`` references."""
    source, sep, function = name.rpartition(":")
    return bool(sep and source and function.isidentifier())


def source_of(ref: str) -> str:
    """Where ``ref``'s code lives: the resolved file path, or the module name."""
    source = ref.rpartition(":")[0]
    return str(Path(source).expanduser().resolve()) if is_path(source) else source


def is_path(source: str) -> bool:
    """A plugin or reward source given as a file path (else a module name)."""
    return source.endswith(".py") or "/" in source or "\\" in source


def load_function(ref: str):
    """The function ``ref`` names; ConfigError if the file, the module or the function is missing."""
    from rlvr.rewards import import_plugin

    source, _, function = ref.rpartition(":")
    module = import_plugin(source)
    fn = getattr(module, function, None)
    if not callable(fn):
        raise ConfigError(f"reward {ref!r}: {source} has no function {function!r}")
    return fn


def style_of(fn, ref: str) -> str:
    """``trl``, ``verl`` or ``rlvr``, from the parameter names; ConfigError for anything else."""
    params = inspect.signature(fn).parameters
    if "solution_str" in params:
        return "verl"
    if "completions" in params:
        return "trl"
    if "completion" in params and "example" in params:
        return "rlvr"
    raise ConfigError(
        f"reward {ref!r}: unknown signature {inspect.signature(fn)}; expected TRL's f(prompts, completions, "
        "**kwargs), verl's compute_score(data_source, solution_str, ground_truth, extra_info) or "
        "rlvr's f(completion, example)"
    )


def trl_batch(fn):
    """A batch reward (rlvr.rewards.BATCH_REWARDS) calling the TRL-style ``fn``."""
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(fn).parameters.values())
    accepted = set(inspect.signature(fn).parameters)

    def call(completions: list[Completion], examples: list[Example]):
        kwargs = trl_inputs(completions, examples)
        if not accepts_any:
            kwargs = {k: v for k, v in kwargs.items() if k in accepted}
        return fn(**kwargs)

    call.is_async = inspect.iscoroutinefunction(fn)  # type: ignore[attr-defined]
    call.__name__ = getattr(fn, "__name__", "reward")
    return call


def trl_inputs(completions: list[Completion], examples: list[Example]) -> dict[str, list[Any]]:
    """The keyword lists GRPOTrainer passes a reward function, built from rlvr's records."""
    prompts = [e.meta.get("prompt", e.prompt) for e in examples]
    out: dict[str, list[Any]] = {
        "prompts": prompts,
        "completions": [
            c.response if isinstance(p, str) else [{"role": "assistant", "content": c.response}]
            for c, p in zip(completions, prompts, strict=True)
        ],
        "completion_ids": [list(c.token_ids) for c in completions],
    }
    columns = [k for e in examples for k in e.meta if k != "prompt"]
    for key in dict.fromkeys(columns):
        if key not in out:
            out[key] = [e.meta.get(key) for e in examples]
    out.setdefault("answer", [e.answer for e in examples])
    return out


def verl_reward(fn):
    """A per-completion reward (rlvr.rewards.REWARDS) calling verl's ``compute_score``."""
    params = inspect.signature(fn).parameters
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in params.values())

    def call(completion: Completion, example: Example):
        truth = example.meta.get("reward_model")
        truth = truth["ground_truth"] if isinstance(truth, dict) and "ground_truth" in truth else example.answer
        kwargs = {
            "data_source": example.meta.get("data_source"),
            "solution_str": completion.response,
            "ground_truth": truth,
            "extra_info": example.meta.get("extra_info"),
        }
        if not accepts_any:
            kwargs = {k: v for k, v in kwargs.items() if k in params}
        result = fn(**kwargs)
        if isinstance(result, dict):
            if "score" not in result:
                raise ValueError(f"compute_score returned a dict without 'score' (keys: {', '.join(result)})")
            result = result["score"]
        return result

    call.__name__ = getattr(fn, "__name__", "compute_score")
    return call


def run_async(calls: list) -> list:
    """Await every coroutine in ``calls`` concurrently; from inside a running loop (a notebook), in a thread."""

    async def gather():
        return await asyncio.gather(*calls, return_exceptions=True)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(gather())
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, gather()).result()
