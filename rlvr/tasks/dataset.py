"""Examples from the dataset files users already have, read by Hugging Face ``datasets``.

``task.name: dataset`` reads a saved dataset directory (``save_to_disk``; a ``DatasetDict``'s
``split``), or a parquet, JSON Lines, JSON or CSV file. Row shapes it understands:

- TRL's *standard* format: ``prompt`` is a string;
- TRL's *conversational* format: ``prompt`` is a list of ``{"role", "content"}`` messages;
- verl's parquet layout: ``prompt`` (messages), ``data_source``, ``reward_model.ground_truth``,
  ``extra_info``;
- question/answer rows (GSM8K, MATH): ``question`` or ``problem`` and ``answer`` or ``solution``.

``prompt_field`` and ``answer_field`` name the columns (``auto``: the first present of the names
above; a dotted path such as ``reward_model.ground_truth`` reaches into a struct column). The gold
answer is the text after the last ``####`` when there is one (GSM8K), else the whole value
(non-strings as JSON). Every column but the prompt reaches the rewards in ``example.meta``, and
``meta["prompt"]`` keeps the prompt as the file had it (TRL-style reward files receive it as
``prompts``). A string prompt goes through the chat template as a user message unless
``chat_template: false`` (then the model reads it as it stands, as TRL does for standard-format
data); ``system_prompt`` adds a system message, ``instruction`` is appended to the last user
message, ``chat_template_kwargs`` reach the template (``{enable_thinking: false}``).

Splits, as the ``jsonl`` task: ``eval_path`` (another file) or ``eval_split`` (another split of a
saved ``DatasetDict``) gives the held-out rows, dropping train rows with the same prompt;
otherwise rows are hash-split on the prompt text (``eval_percent`` % held out whatever the seed).
Ids are ``<file stem>:<row>`` with 0-based rows, as ``datasets`` counts them. A malformed row is a
:class:`DataError` naming the file and row (for JSON Lines: the line). Limits: the whole split is
held in memory; images and other non-text message content are refused; ``datasets`` keeps its
Arrow cache in the Hugging Face cache directory.
"""

import json
import logging
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rlvr.errors import ConfigError, DataError, one_line
from rlvr.tasks import TASKS, ListTask, Task, check_params, is_eval_key
from rlvr.tasks.jsonl import gold_answer
from rlvr.types import Example, Messages

log = logging.getLogger(__name__)

PROMPT_FIELDS = ("prompt", "question", "problem", "input", "query")
ANSWER_FIELDS = ("answer", "solution", "ground_truth", "reward_model.ground_truth", "target")
ROLES = {"system", "user", "assistant", "tool"}
FILE_BUILDERS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}


@TASKS.register("dataset")
def dataset(
    path: str,
    eval_path: str | None = None,
    split: str = "train",
    eval_split: str | None = None,
    prompt_field: str = "auto",
    answer_field: str | None = "auto",
    system_prompt: str | None = None,
    instruction: str = "",
    chat_template: bool = True,
    chat_template_kwargs: dict[str, Any] | None = None,
    verifier: str = "math",
    eval_size: int = 200,
    eval_percent: int = 10,
    seed: int = 0,
) -> Task:
    """A task from a dataset file or directory; ``answer_field: null`` for data with no gold answer
    (rewards read the other columns)."""
    check_params("dataset", eval_percent=eval_percent, eval_size=eval_size)
    for key, value in (("path", path), ("split", split), ("prompt_field", prompt_field), ("instruction", instruction)):
        if not isinstance(value, str) or (key != "instruction" and not value):
            raise ConfigError(f"task.{key} must be a non-empty string, got {value!r}")
    for key, value in (("eval_path", eval_path), ("eval_split", eval_split), ("answer_field", answer_field),
                       ("system_prompt", system_prompt)):  # fmt: skip
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"task.{key} must be a string or null, got {value!r}")
    try:
        json.dumps(chat_template_kwargs or {})
    except (TypeError, ValueError) as err:
        raise ConfigError(f"task.chat_template_kwargs must hold plain values (strings, numbers): {err}") from None
    shape = RowShape(prompt_field, answer_field, system_prompt, instruction, chat_template, chat_template_kwargs or {})
    rows = read_examples(path, split, shape)
    if eval_path is not None or eval_split is not None:
        held = _distinct(read_examples(eval_path or path, eval_split or split, shape))[:eval_size]
        held_keys = {_key(e) for e in held}
        train = [e for e in rows if _key(e) not in held_keys]
        if len(train) < len(rows):
            log.warning("%s: dropped %d train rows whose prompt is also held out", path, len(rows) - len(train))
    else:
        pool = _distinct([e for e in rows if is_eval_key(_key(e), eval_percent)])
        chosen = set(random.Random(f"dataset:eval:{seed}").sample(range(len(pool)), min(eval_size, len(pool))))
        held = [e for i, e in enumerate(pool) if i in chosen]
        train = [e for e in rows if not is_eval_key(_key(e), eval_percent)]
    if not train:
        raise DataError(f"{path} has no rows left for training after holding out eval rows")
    if eval_size and not held:
        raise DataError(f"{eval_path or path} has no rows for evaluation (eval_percent={eval_percent})")
    return ListTask("dataset", train=train, eval=held, verifier=verifier)


class RowShape:
    """How a row becomes an :class:`Example`: which columns, and what is added to the prompt."""

    def __init__(self, prompt_field, answer_field, system_prompt, instruction, chat_template, template_kwargs):
        self.prompt_field, self.answer_field = prompt_field, answer_field
        self.system_prompt, self.instruction = system_prompt, instruction
        self.chat_template, self.template_kwargs = chat_template, dict(template_kwargs)


def read_examples(path: str, split: str, shape: RowShape) -> list[Example]:
    """Every row of the file (or the saved dataset's ``split``) as an Example, in order."""
    rows, where = read_rows(path, split)
    if not rows:
        raise DataError(f"{path} has no rows")
    columns = list(rows[0])
    prompt_field = _pick_field(path, columns, rows[0], shape.prompt_field, PROMPT_FIELDS, "prompt_field")
    answer_field = shape.answer_field
    if answer_field == "auto":
        answer_field = _pick_field(path, columns, rows[0], "auto", ANSWER_FIELDS, "answer_field")
    stem = Path(path).stem if Path(path).is_file() else f"{Path(path).name}/{split}"
    return [_example(row, i, path, where, stem, prompt_field, answer_field, shape) for i, row in enumerate(rows)]


def read_rows(path: str, split: str) -> tuple[list[dict[str, Any]], str]:
    """Rows as dicts, and how to name one in an error ("row", or "line" for JSON Lines)."""
    source = Path(path).expanduser()
    if not source.exists():
        raise DataError(f"dataset file not found: {path}")
    datasets = _datasets()
    with _quiet(datasets):
        if source.is_dir():
            return _saved_rows(datasets, source, path, split), "row"
        builder = FILE_BUILDERS.get(source.suffix.lower())
        if builder is None:
            known = ", ".join(FILE_BUILDERS)
            raise DataError(f"{path}: unknown dataset file type {source.suffix!r} (expected {known}, or a directory)")
        try:
            rows = list(datasets.load_dataset(builder, data_files=str(source), split="train"))
        except Exception as err:
            if builder != "json":
                raise DataError(f"{path}: cannot read as {builder}: {one_line(err, 300)}") from None
            rows = _json_rows(source, path, err)
    if source.suffix.lower() == ".jsonl":
        return rows, "line"
    return rows, "row"


def _saved_rows(datasets, source: Path, path: str, split: str) -> list[dict[str, Any]]:
    try:
        saved = datasets.load_from_disk(str(source))
    except Exception as err:
        raise DataError(f"{path}: not a dataset saved with save_to_disk ({one_line(err, 300)})") from None
    if isinstance(saved, datasets.DatasetDict):
        if split not in saved:
            raise DataError(f"{path}: no split {split!r} (splits: {', '.join(saved)}); set task.split")
        saved = saved[split]
    return list(saved)


def _json_rows(source: Path, path: str, err: Exception) -> list[dict[str, Any]]:
    """``datasets`` refused a JSON file: name the line that does not parse, or read it as JSON Lines
    when every line parses (``datasets`` also refuses a column whose type changes between rows)."""
    try:
        return [row for _, row in json_lines(source, path)]
    except InvalidJsonLine as bad:
        if source.suffix.lower() == ".json" and bad.line == 1:  # a JSON document, not JSON Lines
            raise DataError(f"{path}: cannot read as JSON: {one_line(err, 300)}") from None
        raise


class InvalidJsonLine(DataError):
    """A line of a JSON Lines file that does not parse (``line``: its 1-based number)."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


def json_lines(source: Path, path: str) -> list[tuple[int, dict[str, Any]]]:
    """Each non-blank line of a JSON Lines file as (its 1-based line number, the object on it); a line
    that does not parse, or holds something other than an object, is a DataError naming it."""
    rows = []
    for n, line in enumerate(source.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise InvalidJsonLine(f"{path} line {n}: invalid JSON ({e.msg} at column {e.colno})", n) from None
        if not isinstance(row, dict):
            raise DataError(f"{path} line {n}: expected a JSON object, got {type(row).__name__}")
        rows.append((n, row))
    return rows


def _pick_field(path: str, columns: list[str], row: dict, field: str, candidates, key: str) -> str:
    if field != "auto":
        return field
    for name in candidates:
        if _lookup(row, name, missing=KeyError) is not KeyError:
            return name
    raise DataError(
        f"{path}: none of the columns {', '.join(columns)} is a known {key.split('_')[0]} column "
        f"({', '.join(candidates)}); set task.{key}"
    )


def _lookup(row: dict, field: str, missing: Any = None) -> Any:
    """``row[field]``, where a dotted path reaches into struct columns (a column named with the dots wins)."""
    if field in row:
        return row[field]
    value: Any = row
    for part in field.split("."):
        if not isinstance(value, dict) or part not in value:
            return missing
        value = value[part]
    return value


def _example(row, i, path, where, stem, prompt_field, answer_field, shape: RowShape) -> Example:
    at = f"{path} {where} {i + 1 if where == 'line' else i}"
    raw = _lookup(row, prompt_field, missing=KeyError)
    if raw is KeyError:
        raise DataError(f"{at}: missing field {prompt_field!r} (fields present: {', '.join(map(repr, row))})")
    messages, raw_prompt = _prompt_messages(raw, at, prompt_field, shape)
    answer = ""
    if answer_field is not None:
        value = _lookup(row, answer_field, missing=KeyError)
        if value is KeyError or value is None:
            raise DataError(f"{at}: missing field {answer_field!r} (set task.answer_field, or null for none)")
        answer = gold_answer(value) if isinstance(value, str) else json.dumps(value)
        if not answer:
            raise DataError(f"{at}: field {answer_field!r} is empty")
    meta = {k: v for k, v in row.items() if k != prompt_field}
    meta["prompt"] = raw
    return Example(
        id=f"{stem}:{i}",
        prompt=messages,
        answer=answer,
        meta=meta,
        raw_prompt=raw_prompt,
        chat_template_kwargs=shape.template_kwargs,
    )


def _prompt_messages(raw: Any, at: str, field: str, shape: RowShape) -> tuple[Messages, bool]:
    if isinstance(raw, str):
        if not raw.strip():
            raise DataError(f"{at}: field {field!r} is empty")
        if not shape.chat_template:
            prefix = f"{shape.system_prompt}\n\n" if shape.system_prompt else ""
            return [{"role": "user", "content": prefix + raw + shape.instruction}], True
        messages = [{"role": "user", "content": raw}]
    elif isinstance(raw, list) and raw:
        messages = [chat_message(m, at, field, k) for k, m in enumerate(raw)]
        if not shape.chat_template:
            raise DataError(f"{at}: field {field!r} is a list of messages, which needs task.chat_template: true")
    else:
        raise DataError(f"{at}: field {field!r} must be a string or a list of messages, got {raw!r:.80}")
    if shape.system_prompt and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": shape.system_prompt})
    if shape.instruction:
        last = max(k for k, m in enumerate(messages) if m["role"] == "user") if _has_user(messages, at) else 0
        messages[last] = {**messages[last], "content": messages[last]["content"] + shape.instruction}
    return messages, False


def chat_message(message: Any, at: str, field: str, k: int) -> dict[str, str]:
    """A checked ``{role, content}`` message of a row (``at`` names the file and row in the error)."""
    if not isinstance(message, dict) or "role" not in message or "content" not in message:
        raise DataError(f"{at}: {field}[{k}] must be a message with 'role' and 'content', got {message!r:.80}")
    if message["role"] not in ROLES:
        raise DataError(f"{at}: {field}[{k}] has role {message['role']!r} (expected one of {', '.join(sorted(ROLES))})")
    if not isinstance(message["content"], str):
        raise DataError(f"{at}: {field}[{k}] content must be a string (images and other parts are not supported)")
    return {"role": message["role"], "content": message["content"]}


def _has_user(messages: Messages, at: str) -> bool:
    if not any(m["role"] == "user" for m in messages):
        raise DataError(f"{at}: the prompt has no user message to append the instruction to")
    return True


def _key(example: Example) -> str:
    """The text the split hashes: the prompt as the file had it."""
    raw = example.meta["prompt"]
    return raw if isinstance(raw, str) else json.dumps(raw, sort_keys=True)


def _distinct(examples: list[Example]) -> list[Example]:
    seen: set[str] = set()
    out = []
    for example in examples:
        key = _key(example)
        if key not in seen:
            seen.add(key)
            out.append(example)
    return out


def _datasets():
    try:
        import datasets
    except ImportError:
        raise ConfigError("task 'dataset' needs Hugging Face datasets: pip install 'rlvr[data]'") from None
    return datasets


@contextmanager
def _quiet(datasets) -> Iterator[None]:
    """No progress bars or logs from ``datasets`` on a plain run."""
    bars = datasets.utils.logging.is_progress_bar_enabled()
    level = datasets.utils.logging.get_verbosity()
    datasets.utils.logging.disable_progress_bar()
    datasets.utils.logging.set_verbosity(logging.CRITICAL)  # a file it refuses is reported by rlvr, with the line
    try:
        yield
    finally:
        datasets.utils.logging.set_verbosity(level)
        if bars:
            datasets.utils.logging.enable_progress_bar()
