"""Structured output: does the completion end with JSON that fits a JSON Schema?

Two rewards, kept separate instead of one with partial credit (say 0.5 for JSON that parses but
breaks the schema), so each component logs one plain fact and the recipe sets the trade-off by
weight: ``[{name: json_schema, schema: {...}}, {name: json_parses, weight: 0.1}]``.

- ``json_parses``: 1.0 if the completion has a final JSON value (:func:`extract_json`), a format
  term like ``boxed_format``;
- ``json_schema``: 1.0 if that value validates against a JSON Schema, the reward's ``schema``
  (a mapping in the recipe) or else ``example.meta["schema"]``; with ``match: true`` it must
  also equal the gold JSON in ``example.answer`` (parsed; with no schema anywhere, equality alone).

The final JSON is the content of the last complete fenced block tagged ``json`` (three backticks,
then ``json``) if there is one (if that does not parse there is no JSON: the model's declared
answer is broken, an earlier block does not stand in for it); else the last top-level ``{...}``
or ``[...]`` of the text that parses (a bare number or string counts only inside a fence).
Top-level spans are found by bracket depth, skipping brackets inside JSON strings, so
``{"a": "}"}`` is one object; a balanced span that does not parse hides what is inside it
(``{"user": {"id": 1}, oops}`` is no JSON, not the inner ``{"id": 1}``), while an opener never
closed ("the set {1, 2" in prose) hides nothing. Parsing is strict JSON: no comments, no
trailing commas, no single quotes, no ``NaN``/``Infinity``.

Schemas are checked with the ``jsonschema`` library (the common Python implementation of the
JSON Schema specification, drafts 3 to 2020-12, chosen by the schema's ``$schema``, 2020-12
when absent): a validator written by hand would get ``$ref``, ``oneOf`` and the drafts'
differences subtly wrong. It is an optional dependency, imported on first use. A recipe's schema
that is not a valid schema is a ConfigError when the recipe loads; a bad ``meta["schema"]`` is a
RewardError naming the example. Equality (``match``) compares parsed values: key order does not
matter, list order does, ``1 == 1.0`` but ``true != 1``.

Limits: ``format`` is not asserted (jsonschema's default: ``"format": "email"`` accepts any
string); remote ``$ref`` is never fetched (an unresolvable reference is a RewardError); without a
fence, a bracketed citation after the JSON (``[1]``) is itself the last JSON and fails the schema,
so prompts should ask for a fenced block; duplicate keys keep the last value (Python's json);
nesting deeper than Python's recursion limit is no JSON.
"""

import json
import re
from functools import lru_cache
from typing import Annotated, Any

from pydantic import AfterValidator

from rlvr.errors import ConfigError, RewardError
from rlvr.rewards import REWARDS, model_text
from rlvr.types import Completion, Example

_FENCE = re.compile(r"```[ \t]*json(?![\w-])[ \t]*\n?(.*?)```", re.DOTALL | re.IGNORECASE)
_STRUCTURE = re.compile(r'[{}\[\]"\\]')
_CLOSES = {"}": "{", "]": "["}
MAX_RESCANS = 16  # bounds the work on a text with many unclosed brackets: O(MAX_RESCANS x length)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(text: str) -> tuple[bool, Any]:
    """``(True, value)`` if ``text`` is one strict JSON value, else ``(False, None)``."""
    try:
        return True, json.loads(text, parse_constant=_no_constants)
    except (ValueError, RecursionError):
        return False, None


def _scan(text: str, start: int) -> tuple[list[tuple[int, int]], list[int]]:
    """Balanced ``{...}``/``[...]`` pairs from ``start`` on, and the openers never closed.

    Quotes open JSON strings only inside brackets (prose quotes outside do not count)."""
    stack: list[tuple[int, str]] = []
    pairs: list[tuple[int, int]] = []
    in_string, escaped = False, -1
    for m in _STRUCTURE.finditer(text, start):
        i, ch = m.start(), m.group()
        if in_string:
            if i == escaped:
                continue
            if ch == "\\":
                escaped = i + 1
            elif ch == '"':
                in_string = False
        elif ch in "{[":
            stack.append((i, ch))
        elif ch in "}]":
            opener = _CLOSES[ch]
            depth = next((d for d in range(len(stack) - 1, -1, -1) if stack[d][1] == opener), None)
            if depth is not None:  # openers above it were never closed: dropped
                pairs.append((stack[depth][0], i + 1))
                del stack[depth:]
        elif ch == '"' and stack:
            in_string = True
    return pairs, [i for i, _ in stack]


def _top_level_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each balanced ``{...}``/``[...]`` not inside another, in order.

    After an opener never closed, its quotes may have been read wrongly ('He said "hi {" then
    {"a": 1}'), so the text after it is scanned again (at most :data:`MAX_RESCANS` times)."""
    pairs: list[tuple[int, int]] = []
    start = 0
    for _ in range(MAX_RESCANS + 1):
        found, unclosed = _scan(text, start)
        if not unclosed:
            break
        pairs += [pair for pair in found if pair[0] < unclosed[0]]  # those all closed before it opened
        start = unclosed[0] + 1
    pairs += [pair for pair in found if pair[0] >= start]
    top: list[tuple[int, int]] = []
    for begin, end in sorted(pairs):
        if not top or begin >= top[-1][1]:
            top.append((begin, end))
    return top


def extract_json(text: str) -> tuple[bool, Any]:
    """``(True, value)`` for the completion's final JSON (see the module docstring), else ``(False, None)``."""
    fenced = _FENCE.findall(text)
    if fenced:
        return parse_json(fenced[-1].strip())
    for start, end in reversed(_top_level_spans(text)):
        ok, value = parse_json(text[start:end])
        if ok:
            return True, value
    return False, None


def json_equal(a: Any, b: Any) -> bool:
    """Equality of parsed JSON values: dict key order ignored, ``1 == 1.0``, but booleans are not numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _jsonschema():
    try:
        import jsonschema
    except ImportError:
        raise ConfigError("the json_schema reward needs jsonschema: pip install 'jsonschema>=4.18'") from None
    return jsonschema


@lru_cache(maxsize=256)
def _validator(schema_json: str):
    """A validator for the schema (given as canonical JSON text, so it can be a cache key);
    jsonschema's SchemaError if the schema is not valid."""
    jsonschema = _jsonschema()
    schema = json.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _compiled(schema: Any):
    """The validator, or a ValueError with a one-line reason why ``schema`` is not a JSON Schema."""
    if not isinstance(schema, dict | bool):
        raise ValueError(f"must be a JSON Schema object (or true/false), got {type(schema).__name__}")
    try:
        key = json.dumps(schema, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"is not JSON data ({err})") from None
    try:
        return _validator(key)
    except _jsonschema().SchemaError as err:
        where = "/".join(str(p) for p in err.path) or "top level"
        raise ValueError(f"is not a valid JSON Schema: {' '.join(err.message.split())[:200]} (at {where})") from None


def _check_recipe_schema(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    if schema is not None:
        _compiled(schema)  # a ValueError here is the recipe's ConfigError (rewards[i].schema)
    return schema


@REWARDS.register("json_parses", vote_key=None)  # no maj@k: JSON values are not votes
def json_parses(completion: Completion | str, example: Example) -> float:
    """1.0 if the completion has a final JSON value (a fenced ``json`` block that parses, else a
    top-level object or array that parses), else 0.0; the schema is not looked at."""
    found, _ = extract_json(model_text(completion))
    return 1.0 if found else 0.0


@REWARDS.register("json_schema", vote_key=None)
def json_schema(
    completion: Completion | str,
    example: Example,
    *,
    schema: Annotated[dict[str, Any] | None, AfterValidator(_check_recipe_schema)] = None,
    match: bool = False,
) -> float:
    """1.0 if the completion's final JSON validates against ``schema`` (else ``example.meta["schema"]``)
    and, with ``match``, equals the parsed ``example.answer`` (:func:`json_equal`); else 0.0.

    RewardError naming the example: no schema anywhere and no ``match``; a ``meta["schema"]`` that
    is not a valid schema; with ``match``, an ``example.answer`` that is not JSON."""
    if schema is None and "schema" in example.meta:
        try:
            validator = _compiled(example.meta["schema"])
        except ValueError as err:
            raise RewardError(f"example {example.id!r}: meta['schema'] {err}") from None
    elif schema is not None:
        validator = _compiled(schema)
    elif match:
        validator = None
    else:
        raise RewardError(
            f"example {example.id!r}: json_schema has no schema: set the reward's schema, "
            "give the example meta['schema'], or set match: true"
        )
    found, value = extract_json(model_text(completion))
    if not found or (validator is not None and not validator.is_valid(value)):
        return 0.0
    if match:
        ok, gold = parse_json(example.answer)
        if not ok:
            raise RewardError(f"example {example.id!r}: answer {example.answer[:80]!r} is not JSON (match: true)")
        return 1.0 if json_equal(value, gold) else 0.0
    return 1.0
