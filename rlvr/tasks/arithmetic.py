"""Procedural arithmetic: "What is 3 + 5 * 2?" with an exact integer answer.

The smallest task that still needs a verifier: the default (one digit, two operands, "+")
is learnable by a tiny model on a CPU in minutes, and ``digits``/``operands``/``operators``
make it harder without changing anything else.

How the held-out split is keyed (see :mod:`rlvr.tasks` for the hashing):

- Small spaces, ``10**(digits*operands) < 10 * (train_size + eval_size)``: the key is
  (expression, phrasing template). One digit and two operands give only 100 sums, too few
  to hold 200 out, so eval holds out *prompts*: the same sum may appear in both splits
  under different phrasings ("What is 3 + 5?" in train, "Compute 3 + 5." in eval). Eval
  then measures learning of the phrasings and sums jointly, not generalisation to unseen
  numbers.
- Large spaces: the key is the expression alone, so no expression (whatever its phrasing)
  is in both splits. With the default sizes (2,200 problems) this needs
  ``digits * operands >= 5``, e.g. three digits and two operands. Two digits and two
  operands (10,000 pairs) still use the small-space key.

Limits: the key choice depends on ``train_size + eval_size``, so changing the sizes across
that threshold changes which problems are held out. Templates are part of the key: append
new phrasings at the end of :data:`TEMPLATES`, never reorder them.
"""

import itertools
import random
from collections.abc import Callable

from rlvr.errors import ConfigError, DataError
from rlvr.tasks import TASKS, ListTask, Task, check_params, draw_splits, is_eval_key
from rlvr.types import Example

TEMPLATES = (
    "What is {expr}?",
    "Compute {expr}.",
    "Calculate {expr}.",
    "Find the value of {expr}.",
    "Evaluate {expr}.",
    "What does {expr} equal?",
    "Work out {expr}.",
    "Solve {expr}.",
)
INSTRUCTION = " Give only the final number in \\boxed{}."
ENUMERATE_LIMIT = 20_000  # enumerate the whole space (exact counts) up to this many problems

Problem = tuple[tuple[int, ...], tuple[str, ...], int]  # (operands, operators, template index)


def expression(problem: Problem) -> str:
    """The expression text: operands and operators separated by spaces, e.g. ``3 + 5 * 2``."""
    numbers, ops, _ = problem
    parts = [str(numbers[0])]
    for op, n in zip(ops, numbers[1:], strict=True):
        parts += [op, str(n)]
    return " ".join(parts)


def evaluate(numbers: tuple[int, ...], ops: tuple[str, ...]) -> int:
    """The exact value with normal precedence (``*`` before ``+``/``-``, left to right).

    Works on the structured problem, never on text, so no parser or ``eval`` is involved.
    """
    terms, signs = [numbers[0]], [1]
    for op, n in zip(ops, numbers[1:], strict=True):
        if op == "*":
            terms[-1] *= n
        else:
            terms.append(n)
            signs.append(1 if op == "+" else -1)
    return sum(s * t for s, t in zip(signs, terms, strict=True))


@TASKS.register("arithmetic")
def arithmetic(
    digits: int = 1,
    operands: int = 2,
    operators: str = "+",
    train_size: int = 2000,
    eval_size: int = 200,
    seed: int = 0,
    eval_percent: int = 30,
    instruction: str = INSTRUCTION,
) -> Task:
    """Expressions of ``operands`` integers in ``0 .. 10**digits - 1`` joined by ``operators``.
    ``instruction`` follows the question (default: answer with only the number, boxed; a chain-of-
    thought recipe asks for reasoning first).

    Eval: ``eval_size`` distinct held-out problems in a seed-determined order (DataError if
    the space holds fewer). Train: ``train_size`` problems sampled with replacement from the
    train side only.
    """
    ops = tuple(dict.fromkeys(operators))
    if not ops or any(op not in "+-*" for op in ops):
        raise ConfigError(f"task 'arithmetic': operators must be characters from '+-*', got {operators!r}")
    if digits < 1 or operands < 2:
        raise ConfigError(f"task 'arithmetic': need digits >= 1 and operands >= 2, got {digits}, {operands}")
    check_params("arithmetic", eval_percent=eval_percent, train_size=train_size, eval_size=eval_size)

    by_expression = 10 ** (digits * operands) >= 10 * (train_size + eval_size)

    def key(p: Problem) -> str:
        return f"arithmetic:{expression(p)}" + ("" if by_expression else f"|{p[2]}")

    n_expressions = 10 ** (digits * operands) * len(ops) ** (operands - 1)
    n_keys = n_expressions if by_expression else n_expressions * len(TEMPLATES)
    if not by_expression and n_keys <= ENUMERATE_LIMIT:
        train, held = _enumerated_splits(digits, operands, ops, key, train_size, eval_size, seed, eval_percent)
    else:
        train, held = draw_splits(
            "arithmetic",
            _drawer(digits, operands, ops),
            key,
            train_size=train_size,
            eval_size=eval_size,
            eval_percent=eval_percent,
            seed=seed,
        )
    return ListTask(
        "arithmetic",
        train=[_example(p, f"arith-train-{i}", instruction) for i, p in enumerate(train)],
        eval=[_example(p, f"arith-eval-{i}", instruction) for i, p in enumerate(held)],
    )


def _enumerated_splits(
    digits: int,
    operands: int,
    ops: tuple[str, ...],
    key: Callable[[Problem], str],
    train_size: int,
    eval_size: int,
    seed: int,
    eval_percent: int,
) -> tuple[list[Problem], list[Problem]]:
    """Exact splits for small spaces: every (expression, template) problem, partitioned by hash."""
    problems = [
        (numbers, op_seq, t)
        for numbers in itertools.product(range(10**digits), repeat=operands)
        for op_seq in itertools.product(ops, repeat=operands - 1)
        for t in range(len(TEMPLATES))
    ]
    held_pool: list[Problem] = []
    train_pool: list[Problem] = []
    for p in problems:
        (held_pool if is_eval_key(key(p), eval_percent) else train_pool).append(p)
    if len(held_pool) < eval_size:
        raise DataError(
            f"task 'arithmetic': only {len(held_pool)} of the {len(problems)} distinct problems are held out "
            f"at eval_percent={eval_percent}, but eval_size={eval_size}; lower eval_size or raise "
            "digits, operands or eval_percent"
        )
    if train_size and not train_pool:
        raise DataError(f"task 'arithmetic': all {len(problems)} problems are held out; lower eval_percent")
    held = random.Random(f"arithmetic:eval:{seed}").sample(held_pool, eval_size)
    train = random.Random(f"arithmetic:train:{seed}").choices(train_pool, k=train_size)
    return train, held


def _drawer(digits: int, operands: int, ops: tuple[str, ...]) -> Callable[[random.Random], Problem]:
    def draw(rng: random.Random) -> Problem:
        numbers = tuple(rng.randrange(10**digits) for _ in range(operands))
        op_seq = tuple(rng.choice(ops) for _ in range(operands - 1))
        return numbers, op_seq, rng.randrange(len(TEMPLATES))

    return draw


def _example(problem: Problem, example_id: str, instruction: str = INSTRUCTION) -> Example:
    expr = expression(problem)
    content = TEMPLATES[problem[2]].format(expr=expr) + instruction
    return Example(
        id=example_id,
        prompt=[{"role": "user", "content": content}],
        answer=str(evaluate(problem[0], problem[1])),
        meta={"expression": expr, "template": problem[2], "hints": hints(problem[0], problem[1])},
    )


def hints(numbers: tuple[int, ...], ops: tuple[str, ...]) -> list[str]:
    """Scaf-GRPO's three tiers for one problem (rlvr.samplers.hints), abstract to concrete: the rule
    (knowledge), the order of the operations (planning), every intermediate result but the last
    (solution). A one-operation problem is split at its second operand (47 + 38 as 47 + 30 + 8)."""
    if "*" in ops and len(ops) > 1:
        knowledge = "Multiplication comes before addition and subtraction; do one operation at a time."
    elif max(numbers) >= 10:
        knowledge = "Work in parts: split a number into tens and ones and combine one part at a time."
    else:
        knowledge = "Do one operation at a time, from left to right."
    steps = _steps(numbers, ops)  # [(a, op, b, value)] in the order they are worked out
    if len(steps) == 1:
        a, op, b, _ = steps[0]
        first, second = (b - b % 10, b % 10) if b >= 10 and b % 10 else (b - 1, 1)
        if b < 2:
            return [knowledge, f"Compute {a} {op} {b} directly.", f"{a} {op} {b} needs one step."]
        join = "+" if op in "+*" else "-"
        if op == "*":
            plan = f"Write {a} * {b} as {a} * {first} + {a} * {second}."
            solution = f"{a} * {first} = {a * first} and {a} * {second} = {a * second}; now add them."
        else:
            plan = f"Write {a} {op} {b} as {a} {join} {first} {join} {second}."
            partial = a + first if op == "+" else a - first
            solution = f"{a} {join} {first} = {partial}; now {partial} {join} {second}."
        return [knowledge, plan, solution]
    products = [f"{a} * {b}" for a, op, b, _ in steps if op == "*"]
    if products:
        plan = f"Work out {' and '.join(products)} first, then the rest from left to right."
    else:
        words = {"+": "add", "-": "subtract"}
        a, op, b, _ = steps[0]
        plan = (
            f"Work left to right: first {a} {op} {b}, then "
            + ", then ".join(f"{words[op]} {b}" for _, op, b, _ in steps[1:])
            + "."
        )
    done = "; ".join(f"{a} {op} {b} = {v}" for a, op, b, v in steps[:-1])
    a, op, b, _ = steps[-1]
    return [knowledge, plan, f"{done}; now {a} {op} {b}."]


def _steps(numbers: tuple[int, ...], ops: tuple[str, ...]) -> list[tuple[int, str, int, int]]:
    """The operations in the order normal precedence works them out, each with its value."""
    steps, terms, signs = [], [numbers[0]], ["+"]
    for op, n in zip(ops, numbers[1:], strict=True):
        if op == "*":
            steps.append((terms[-1], "*", n, terms[-1] * n))
            terms[-1] *= n
        else:
            terms.append(n)
            signs.append(op)
    value = terms[0]
    for sign, term in zip(signs[1:], terms[1:], strict=True):
        result = value + term if sign == "+" else value - term
        steps.append((value, sign, term, result))
        value = result
    return steps
