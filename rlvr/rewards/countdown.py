"""Countdown verifier: does the answer expression reach the target with the given numbers?

The expression is read from the last ``\\boxed{}``, or failing that the last non-empty line.
It is parsed with :mod:`ast` and evaluated by walking the tree with exact
:class:`~fractions.Fraction` arithmetic; nothing is ever passed to ``eval``. Allowed: integer
literals, ``+ - * /``, unary minus and parentheses. Everything else (names, calls, ``**``,
floats, ``//``, attribute access) makes the answer wrong, so ``__import__('os')`` or
``2**99999`` cost nothing. Each number may be used at most as many times as it is given;
unlike TinyZero, not every number has to be used.

Tolerated forms: LaTeX operators (``\\times``, ``\\cdot``, ``\\div``) and the Unicode times and
division signs, ``$``, and a trailing ``= target`` (``(3 + 5) * 3 = 24``). Limit: ``\\frac{a}{b}``
and implicit multiplication (``2(3 + 4)``) are not understood and score 0.
"""

import ast
import operator
import re
from collections import Counter
from fractions import Fraction

from rlvr.rewards import REWARDS, model_text
from rlvr.rewards.math import boxed_contents
from rlvr.types import Completion, Example

MAX_EXPRESSION_CHARS = 500

_REPLACE = {
    "\\times": "*",
    "\\cdot": "*",
    "\u00d7": "*",
    "\u00b7": "*",
    "\\div": "/",
    "\u00f7": "/",
    "\\left": "",
    "\\right": "",
    "$": "",
    "\\(": "",
    "\\)": "",
}
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_ALLOWED = re.compile(r"[0-9+\-*/()\s]+")  # also rules out 0x10, 1_0, 1e3, names


class _Invalid(Exception):
    """The expression breaks a rule (disallowed syntax, number not available, division by zero)."""


def check_countdown(expression: str, numbers: list[int], target: int) -> bool:
    """True if ``expression`` uses only ``numbers`` (each at most as often as given) and equals ``target``."""
    for old, new in _REPLACE.items():
        expression = expression.replace(old, new)
    body, *rest = [p.strip() for p in expression.split("=")]
    if rest:  # "expr = target" or "target = expr": every other side must be the bare target
        others = [p for p in [body, *rest] if p != str(target)]
        if len(others) > 1:
            return False
        body = others[0] if others else str(target)
    if len(body) > MAX_EXPRESSION_CHARS or not _ALLOWED.fullmatch(body):
        return False
    try:
        tree = ast.parse(body, mode="eval")
        return _value(tree.body, Counter(numbers)) == target
    except (_Invalid, SyntaxError, ValueError, RecursionError, MemoryError):
        return False


def _value(node: ast.expr, budget: Counter[int]) -> Fraction:
    """Exact value of an allowed expression tree, spending numbers from ``budget``."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        if budget[node.value] <= 0:
            raise _Invalid(f"number {node.value} not available")
        budget[node.value] -= 1
        return Fraction(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _value(node.left, budget), _value(node.right, budget)
        if isinstance(node.op, ast.Div) and right == 0:
            raise _Invalid("division by zero")
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_value(node.operand, budget)
    raise _Invalid(f"{type(node).__name__} is not allowed")


def answer_expression(completion: str) -> str | None:
    """The last non-empty ``\\boxed{}`` content, else the last non-empty line, else None."""
    boxed = [c.strip() for c in boxed_contents(completion) if c.strip()]
    if boxed:
        return boxed[-1]
    lines = [line.strip() for line in completion.splitlines() if line.strip()]
    return lines[-1] if lines else None


@REWARDS.register("countdown")
def countdown_reward(completion: Completion | str, example: Example) -> float:
    """1.0 if the answer expression reaches ``meta["target"]`` using ``meta["numbers"]``, else 0.0.

    Needs an example from the ``countdown`` task (or any with those two meta fields); a
    missing field raises, which :func:`rlvr.rewards.score` reports as a misconfigured reward.
    """
    numbers, target = example.meta.get("numbers"), example.meta.get("target")
    if not isinstance(numbers, list) or not isinstance(target, int):
        raise ValueError("the countdown reward needs example.meta['numbers'] (list) and ['target'] (int)")
    expression = answer_expression(model_text(completion))
    return 1.0 if expression is not None and check_countdown(expression, numbers, target) else 0.0
