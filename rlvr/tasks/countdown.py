"""Countdown (TinyZero's task): reach a target from given numbers with + - * / and parentheses.

Every instance is solvable by construction: the generator builds a random expression over
all the numbers and takes its value as the target. Intermediate values stay positive
integers no larger than ``max_target`` (subtraction takes larger minus smaller, division
only when exact), so a solution never needs fractions or negatives, though the verifier
(:func:`rlvr.rewards.countdown.check_countdown`) accepts any exact route.

The held-out key is (sorted numbers, target): the same puzzle with the numbers listed in
another order is the same problem. The generating expression is kept in
``meta["solution"]`` for tests and debugging; it is never shown in the prompt.
Limits: instances are not deduplicated against near-variants (same numbers, target + 1),
and the target may equal one of the numbers (trivial instance), as in TinyZero's data.
"""

import random
import re

from rlvr.errors import ConfigError
from rlvr.tasks import TASKS, ListTask, Task, check_params, draw_splits
from rlvr.types import Example

Instance = tuple[tuple[int, ...], int, str]  # (numbers in prompt order, target, solution)


def make_instance(rng: random.Random, count: int, max_number: int, max_target: int) -> Instance:
    """Draw ``count`` numbers in ``1..max_number`` and combine them all into a reachable target."""
    numbers = tuple(rng.randint(1, max_number) for _ in range(count))
    items = [(n, str(n)) for n in numbers]
    while len(items) > 1:
        i, j = rng.sample(range(len(items)), 2)
        (a, ea), (b, eb) = items[i], items[j]
        items = [item for k, item in enumerate(items) if k not in (i, j)]
        items.append(rng.choice(_combinations(a, _wrap(ea), b, _wrap(eb), max_target)))
    return numbers, items[0][0], items[0][1]


def _wrap(expr: str) -> str:
    return expr if expr.isdigit() else f"({expr})"


def _combinations(a: int, ea: str, b: int, eb: str, max_target: int) -> list[tuple[int, str]]:
    """Every way to combine two values that stays a positive integer <= max_target (never empty)."""
    hi, ehi, lo, elo = (a, ea, b, eb) if a >= b else (b, eb, a, ea)
    out = [(a + b, f"{ea} + {eb}"), (a * b, f"{ea} * {eb}")]
    if hi > lo:
        out.append((hi - lo, f"{ehi} - {elo}"))
    if hi % lo == 0:
        out.append((hi // lo, f"{ehi} / {elo}"))
    return [(v, e) for v, e in out if 0 < v <= max_target]


def prompt_text(numbers: tuple[int, ...] | list[int], target: int) -> str:
    listed = ", ".join(map(str, numbers))
    return (
        f"Using the numbers {listed}, write an expression that equals {target}. You may use +, -, *, / "
        "and parentheses, and each number at most once. Give only the expression in \\boxed{}, "
        "for example \\boxed{(1 + 2) * 3}."
    )


@TASKS.register("countdown")
def countdown(
    count: int = 4,
    max_number: int = 100,
    train_size: int = 2000,
    eval_size: int = 200,
    seed: int = 0,
    eval_percent: int = 30,
    max_target: int = 1000,
) -> Task:
    """``count`` numbers in ``1..max_number`` and a reachable target in ``1..max_target``."""
    if count < 2 or max_number < 1:
        raise ConfigError(f"task 'countdown': need count >= 2 and max_number >= 1, got {count}, {max_number}")
    if max_target < max_number:
        raise ConfigError(f"task 'countdown': max_target ({max_target}) must be >= max_number ({max_number})")
    check_params("countdown", eval_percent=eval_percent, train_size=train_size, eval_size=eval_size)

    def draw(rng: random.Random) -> Instance:
        return make_instance(rng, count, max_number, max_target)

    def key(inst: Instance) -> str:
        return f"countdown:{','.join(map(str, sorted(inst[0])))}={inst[1]}"

    train, held = draw_splits(
        "countdown",
        draw,
        key,
        train_size=train_size,
        eval_size=eval_size,
        eval_percent=eval_percent,
        seed=seed,
    )
    return ListTask(
        "countdown",
        train=[_example(inst, f"countdown-train-{i}") for i, inst in enumerate(train)],
        eval=[_example(inst, f"countdown-eval-{i}") for i, inst in enumerate(held)],
        verifier="countdown",
    )


def _example(inst: Instance, example_id: str) -> Example:
    numbers, target, solution = inst
    return Example(
        id=example_id,
        prompt=[{"role": "user", "content": prompt_text(numbers, target)}],
        answer=str(target),
        meta={"numbers": list(numbers), "target": target, "solution": solution, "hints": hints(solution)},
    )


def hints(solution: str) -> list[str]:
    """Scaf-GRPO's three tiers (rlvr.samplers.hints), abstract to concrete: the method, the two numbers
    one solution combines first, and that first step with its value."""
    inner = re.search(r"\(([^()]*)\)", solution)
    first = inner.group(1) if inner else solution
    a, op, b = first.split()[:3]
    value = {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}.get(op)
    value = int(a) // int(b) if value is None else value
    return [
        "Combine two numbers at a time; aim for a value from which the target is one operation away.",
        f"One solution starts by combining {a} and {b}.",
        f"One solution starts with {a} {op} {b} = {value}.",
    ]
