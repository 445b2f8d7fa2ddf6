"""A mixture of tasks (or of one task at several difficulties), each example labelled with its part.

``task: {name: mixture, parts: [{name: arithmetic, operands: 2, difficulty: easy}, {name: arithmetic,
operands: 4, difficulty: hard}]}``: every part is a task of its own (its keys checked as a task's
are), and each example carries ``meta["difficulty"]`` (the part's ``difficulty``, default its
index), which eval reports accuracy, length and no-think rate by (rlvr.evaluate), and
``meta["task"]``, the part's task name (whose demonstrator writes its demonstrations). Both splits
interleave the parts round-robin, so the first ``eval.size`` held-out problems cover every part
evenly. Held-out problems stay held out: each part keeps its own task's split, and a train example
whose prompt is held out by another part (overlapping settings, say one-digit and up-to-two-digit
arithmetic) is dropped. Limit: the parts must share one verifier.
"""

from dataclasses import replace
from itertools import zip_longest
from typing import Any

from rlvr.errors import ConfigError
from rlvr.tasks import TASKS, ListTask, Task, make_task


@TASKS.register("mixture")
def mixture(parts: list[dict[str, Any]]) -> Task:
    if not isinstance(parts, list) or not parts or not all(isinstance(p, dict) and "name" in p for p in parts):
        raise ConfigError("task 'mixture': parts must be a non-empty list of task mappings, each with a name")
    tasks, labels, names = [], [], []
    for i, part in enumerate(parts):
        params = {k: v for k, v in part.items() if k not in ("name", "difficulty")}
        try:
            tasks.append(make_task(part["name"], **params))
        except ConfigError as err:
            raise ConfigError(f"task 'mixture', part {i}: {err}") from None
        labels.append(str(part.get("difficulty", i)))
        names.append(part["name"])
    verifiers = {t.verifier for t in tasks}
    if len(verifiers) > 1:
        raise ConfigError(f"task 'mixture': the parts' verifiers differ ({', '.join(sorted(verifiers))})")
    if len(set(labels)) < len(labels):
        raise ConfigError(f"task 'mixture': the parts' difficulty labels repeat: {labels}")

    def interleaved(which: str) -> list:
        lists = [
            [replace(e, id=f"{tag}:{e.id}", meta={**e.meta, "difficulty": tag, "task": name}) for e in t.split(which)]
            for t, tag, name in zip(tasks, labels, names, strict=True)
        ]
        return [e for row in zip_longest(*lists) for e in row if e is not None]

    held = interleaved("eval")
    held_prompts = {_prompt_key(e) for e in held}
    train = [e for e in interleaved("train") if _prompt_key(e) not in held_prompts]
    return ListTask("mixture", train=train, eval=held, verifier=verifiers.pop())


def _prompt_key(example) -> tuple:
    return tuple((m.get("role"), m.get("content")) for m in example.prompt)
