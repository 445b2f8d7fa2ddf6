"""Math answers: pull the final answer out of a completion and compare it with the gold one.

:func:`extract_answer` looks for, in order: the last ``\\boxed{...}``, the text after the last
``####`` (GSM8K), the last number. :func:`answers_match` compares plain numbers exactly
(``8 == 8.0 == 8.00``, ``1/2 == 0.5``, ``1,234 == 1234``) and hands anything else to
math-verify (Hugging Face's symbolic checker: ``\\frac{1}{2} == 0.5``, ``\\sqrt{8} == 2\\sqrt{2}``).

Limits: two plain numbers must be exactly equal (``0.333`` is not ``1/3``; math-verify would
round); the last-number fallback will read ``2`` from ``\\frac{1}{2}`` written without a box;
math-verify is skipped for strings over :data:`MAX_VERIFY_CHARS` characters. math-verify
guards each call with a ``signal.alarm`` timeout, which only works in the main thread; in
other threads we pass its switch that turns the timeout off, so a pathological expression
could then run long (the length cap is the only guard there).
"""

import re
import threading
from fractions import Fraction

from rlvr.rewards import REWARDS, model_text
from rlvr.types import Completion, Example

MAX_VERIFY_CHARS = 1000

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_NUMBER = re.compile(r"(?:(?<![\d)])-)?(?<![\w.])(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:/\d+)?")
_PLAIN = re.compile(r"[-+]?(?:\d+(?:\.\d+)?|\.\d+)(?:/\d+)?")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


def boxed_contents(text: str) -> list[str]:
    """The contents of every complete ``\\boxed{...}`` (or ``\\fbox``), in order of appearance.

    Braces are matched by depth, so ``\\boxed{\\frac{1}{2}}`` gives ``\\frac{1}{2}``. An
    unclosed box (a completion cut off at the length limit) is ignored.
    """
    out = []
    for match in _BOXED.finditer(text):
        depth, start = 1, match.end()
        for i in range(start, len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    out.append(text[start:i])
                    break
    return out


def extract_answer(text: str) -> str | None:
    """The final answer in ``text``, or None if it has none.

    Order: the last non-empty ``\\boxed{}``; else the rest of the line after the last ``####``;
    else the last number (``-3``, ``1,234``, ``3.5``, ``1/2``). The result is stripped but
    not otherwise normalised (:func:`answers_match` does that).
    """
    boxed = [c.strip() for c in boxed_contents(text) if c.strip()]
    if boxed:
        return boxed[-1]
    if "####" in text:
        after = text.rsplit("####", 1)[1].split("\n", 1)[0].strip()
        if after:
            return after
    numbers = _NUMBER.findall(text)
    return numbers[-1] if numbers else None


def plain_number(text: str) -> Fraction | None:
    """``text`` as an exact number if it is a plain one (``$1,234.``, ``-0.5``, ``3/4``), else None."""
    s = text.strip().removeprefix("\\$").removeprefix("$").removesuffix("$").strip().rstrip(".")
    s = _THOUSANDS.sub("", s)
    if not _PLAIN.fullmatch(s):
        return None
    try:
        return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None


def answers_match(predicted: str, gold: str) -> bool:
    """True if ``predicted`` is mathematically equal to ``gold``; False for anything unparsable."""
    p, g = plain_number(predicted), plain_number(gold)
    if p is not None and g is not None:
        return p == g
    if len(predicted) > MAX_VERIFY_CHARS or len(gold) > MAX_VERIFY_CHARS:
        return False
    return _math_verify(predicted, gold)


def _math_verify(predicted: str, gold: str) -> bool:
    from math_verify import parse, verify

    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    try:
        gold_parsed = parse(_as_latex(gold), parsing_timeout=timeout)  # type: ignore[arg-type]
        pred_parsed = parse(_as_latex(predicted), parsing_timeout=timeout)  # type: ignore[arg-type]
        if not gold_parsed or not pred_parsed:
            return False
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout))
    except Exception:  # math-verify's own timeouts and parser failures: no match, not a crash
        return False


def _as_latex(text: str) -> str:
    """Wrap bare text in ``$...$`` so math-verify reads it as math (``\\frac12``, ``x^2``)."""
    return text if "$" in text or "\\boxed" in text else f"${text}$"


@REWARDS.register("math")
def math_reward(completion: Completion | str, example: Example) -> float:
    """1.0 if the completion's final answer equals ``example.answer`` (see :func:`answers_match`)."""
    predicted = extract_answer(model_text(completion))
    return 1.0 if predicted is not None and answers_match(predicted, example.answer) else 0.0
