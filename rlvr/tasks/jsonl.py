"""Question/answer pairs from JSON Lines files (GSM8K's format by default).

Each non-blank line is an object with a question and an answer field. The gold answer is
the text after the last ``####`` (GSM8K's convention), stripped, with thousands commas
removed; an answer without ``####`` is used whole, stripped (commas kept: it may be a tuple).

Splits:

- with ``eval_path``: eval is the first ``eval_size`` rows of that file, in file order;
  train is every row of ``path``, in file order, except rows whose question text is also
  in eval (dropped with a warning, so the splits never overlap).
- without: rows are hash-split on their question text (``eval_percent`` % held out, the
  same rows whatever the seed); eval is ``eval_size`` held-out rows chosen by ``seed`` and
  kept in file order, train is every other row in file order. Held-out rows beyond
  ``eval_size`` are used by neither split (lower ``eval_percent`` to waste fewer).

Ids are ``<file stem>:<line>``, so a logged sample points back to its line. Limits: the
whole file is read into memory; duplicate questions count once in eval.
"""

import json
import logging
import random
from pathlib import Path
from typing import Any

from rlvr.errors import DataError
from rlvr.tasks import TASKS, ListTask, Task, check_params, is_eval_key
from rlvr.types import Example

log = logging.getLogger(__name__)

Row = tuple[int, str, str]  # (line number, question, gold answer)


def gold_answer(answer: str) -> str:
    """GSM8K gold: the text after the last ``####`` without commas, else the whole answer."""
    if "####" in answer:
        return answer.rsplit("####", 1)[1].strip().replace(",", "")
    return answer.strip()


def read_rows(path: str, question_field: str, answer_field: str) -> list[Row]:
    """Every row of a JSONL file as (line, question, gold); DataError naming the file and line."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(f"task file not found: {path}")
    rows = []
    with file.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if line.strip():
                rows.append(_parse_row(path, n, line, question_field, answer_field))
    if not rows:
        raise DataError(f"{path} has no rows")
    return rows


def _parse_row(path: str, n: int, line: str, question_field: str, answer_field: str) -> Row:
    try:
        obj: Any = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"{path} line {n}: invalid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path} line {n}: expected a JSON object, got {type(obj).__name__}")
    values = []
    for field in (question_field, answer_field):
        if field not in obj:
            present = ", ".join(repr(k) for k in obj) or "none"
            raise DataError(f"{path} line {n}: missing field {field!r} (fields present: {present})")
        value = obj[field]
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise DataError(f"{path} line {n}: field {field!r} must be a string or number, got {value!r:.80}")
        values.append(str(value))
    question, answer = values[0].strip(), gold_answer(values[1])
    for field, value in ((question_field, question), (answer_field, answer)):
        if not value:
            raise DataError(f"{path} line {n}: field {field!r} is empty")
    return n, question, answer


@TASKS.register("jsonl")
def jsonl(
    path: str,
    eval_path: str | None = None,
    question_field: str = "question",
    answer_field: str = "answer",
    eval_size: int = 200,
    eval_percent: int = 10,
    seed: int = 0,
    instruction: str = " Put the final answer in \\boxed{}.",
) -> Task:
    """Train (and eval) rows from JSONL files; the prompt is the question plus ``instruction``."""
    check_params("jsonl", eval_percent=eval_percent, eval_size=eval_size)
    rows = read_rows(path, question_field, answer_field)
    if eval_path is not None:
        held = _distinct(read_rows(eval_path, question_field, answer_field))[:eval_size]
        held_questions = {q for _, q, _ in held}
        train = [r for r in rows if r[1] not in held_questions]
        if len(train) < len(rows):
            log.warning("%s: dropped %d train rows whose question is in %s", path, len(rows) - len(train), eval_path)
        eval_file = eval_path
    else:
        pool = _distinct([r for r in rows if is_eval_key(r[1], eval_percent)])
        held = sorted(random.Random(f"jsonl:eval:{seed}").sample(pool, min(eval_size, len(pool))))
        train = [r for r in rows if not is_eval_key(r[1], eval_percent)]
        eval_file = path
    if not train:
        raise DataError(f"{path} has no rows left for training after holding out eval rows")
    if eval_size and not held:
        raise DataError(f"{eval_file} has no rows for evaluation (eval_percent={eval_percent})")
    return ListTask(
        "jsonl",
        train=[_example(r, path, instruction) for r in train],
        eval=[_example(r, eval_file, instruction) for r in held],
    )


def _distinct(rows: list[Row]) -> list[Row]:
    """First occurrence of each question, in file order."""
    seen: set[str] = set()
    out = []
    for row in rows:
        if row[1] not in seen:
            seen.add(row[1])
            out.append(row)
    return out


def _example(row: Row, path: str, instruction: str) -> Example:
    n, question, answer = row
    return Example(
        id=f"{Path(path).stem}:{n}",
        prompt=[{"role": "user", "content": question + instruction}],
        answer=answer,
        meta={"file": path, "line": n},
    )
