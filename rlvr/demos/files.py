"""Demonstrations from a file: JSON Lines read here, parquet / JSON / CSV / ``save_to_disk`` folders
through Hugging Face ``datasets`` (the ``data`` extra), as the ``dataset`` task reads them.

Row shapes (TRL's SFT formats):

- ``{"messages": [...]}``: a whole conversation. The prompt is every message before the first
  assistant one; the chat template renders the rest, and the loss covers each assistant message's
  content and its end-of-turn token, nothing else (system, user and tool messages and the
  template's headers are masked).
- ``{"prompt": ..., "completion": ...}``: the prompt a string (a user message) or messages; the
  completion a string, or messages in rlvr's multi-turn format: ``assistant`` pieces (trained) and
  ``tool`` pieces (masked) joined as they stand in one assistant turn, which is how rlvr's tool
  rollouts interleave model text and tool output (``python``: the ```` ```output ```` block;
  ``search``: the ``<result>`` block).

An ``answer`` column (or ``solution``, ``ground_truth``) is the gold answer rewards score a
demonstration against (LUFFY scores its off-policy members); every other column is ``meta``.
A malformed row is a :class:`rlvr.errors.DataError` naming the file and the line or row.
Limits: the whole file is held in memory; message content must be text.
"""

import json
from pathlib import Path
from typing import Any

from rlvr.errors import DataError
from rlvr.types import Demonstration, Example, Messages

ANSWER_FIELDS = ("answer", "solution", "ground_truth")


def read_demonstrations(path: str, tokenizer) -> list[Demonstration]:
    """Every row of ``path`` as a demonstration, in order."""
    rows = _rows(path)
    if not rows:
        raise DataError(f"{path} has no demonstrations")
    stem = Path(path).stem
    demos = []
    for i, (at, row) in enumerate(rows):
        demos.append(_demonstration(row, f"{stem}:{i}", at, tokenizer))
    return demos


def _rows(path: str) -> list[tuple[str, Any]]:
    """(where, row) pairs: "file line N" for JSON Lines (blank lines skipped, counted), "file row N" else."""
    source = Path(path).expanduser()
    if not source.exists():
        raise DataError(f"demonstrations file not found: {path}")
    from rlvr.tasks.dataset import json_lines, read_rows  # the dataset task's readers: one wording of their errors

    if source.is_file() and source.suffix.lower() == ".jsonl":
        return [(f"{path} line {n}", row) for n, row in json_lines(source, path)]
    rows, _ = read_rows(path, "train")  # not JSON Lines: rows, 0-based as datasets counts them
    return [(f"{path} row {i}", row) for i, row in enumerate(rows)]


def _demonstration(row: dict, demo_id: str, at: str, tokenizer) -> Demonstration:
    answer = next((row[f] for f in ANSWER_FIELDS if row.get(f) is not None), "")
    answer = answer if isinstance(answer, str) else json.dumps(answer)
    meta = {k: v for k, v in row.items() if k not in ("messages", "prompt", "completion")}
    if "messages" in row:
        messages = _messages(row["messages"], at, "messages")
        first = next((k for k, m in enumerate(messages) if m["role"] == "assistant"), None)
        if first is None or first == 0:
            raise DataError(f"{at}: 'messages' needs prompt messages followed by an assistant message")
        example = _example(demo_id, messages[:first], answer, meta, at)
        return Demonstration(example, _conversation(tokenizer, messages, first, at), ends_turn=False, source=at)
    if "prompt" not in row or "completion" not in row:
        raise DataError(f"{at}: a demonstration needs 'messages', or 'prompt' and 'completion' (got {', '.join(row)})")
    prompt = row["prompt"]
    if isinstance(prompt, str) and prompt.strip():
        prompt_messages = [{"role": "user", "content": prompt}]
    elif isinstance(prompt, list) and prompt:
        prompt_messages = _messages(prompt, at, "prompt")
    else:
        raise DataError(f"{at}: 'prompt' must be a non-empty string or a list of messages")
    example = _example(demo_id, prompt_messages, answer, meta, at)
    completion = row["completion"]
    if isinstance(completion, str) and completion:
        return Demonstration(example, ((completion, True),), source=at)
    if not isinstance(completion, list) or not completion:
        raise DataError(f"{at}: 'completion' must be a non-empty string or a list of messages")
    pieces = []
    for k, message in enumerate(_messages(completion, at, "completion")):
        if message["role"] not in ("assistant", "tool"):
            raise DataError(
                f"{at}: completion[{k}] has role {message['role']!r}; a completion holds assistant and tool pieces"
            )
        pieces.append((message["content"], message["role"] == "assistant"))
    if not any(trained for _, trained in pieces):
        raise DataError(f"{at}: 'completion' has no assistant message to train on")
    return Demonstration(example, tuple(pieces), source=at)


def _example(demo_id: str, prompt: Messages, answer: str, meta: dict, at: str) -> Example:
    if not any(m["role"] == "user" for m in prompt):
        raise DataError(f"{at}: the prompt has no user message")
    return Example(demo_id, prompt, answer, meta)


def _messages(raw: Any, at: str, field: str) -> Messages:
    from rlvr.tasks.dataset import chat_message  # the dataset task's check: one wording of every error

    if not isinstance(raw, list) or not raw:
        raise DataError(f"{at}: {field!r} must be a non-empty list of messages")
    return [chat_message(m, at, field, k) for k, m in enumerate(raw)]


def _conversation(tokenizer, messages: Messages, first: int, at: str) -> tuple[tuple[str, bool], ...]:
    """The conversation after the prompt as text pieces: each assistant message's content through its
    end-of-turn token trained; everything else the template writes (headers, other roles) masked.
    Rendered prefix by prefix, so it needs a template that renders a conversation incrementally."""
    if not getattr(tokenizer, "chat_template", None):
        raise DataError(f"{at}: 'messages' needs a tokenizer with a chat template")
    eos = end_of_turn(tokenizer)

    def text(upto: int, generation: bool) -> str:
        return tokenizer.apply_chat_template(messages[:upto], tokenize=False, add_generation_prompt=generation)

    done = text(first, True)
    pieces: list[tuple[str, bool]] = []
    for k in range(first, len(messages)):
        full = text(k + 1, False)
        if messages[k]["role"] == "assistant":
            head = text(k, True)
            if not head.startswith(done) or not full.startswith(head):
                raise DataError(f"{at}: the chat template does not render this conversation turn by turn")
            pieces.append((head[len(done) :], False))
            body = full[len(head) :]
            cut = body.find(eos) + len(eos) if eos and eos in body else len(body)
            pieces += [(body[:cut], True), (body[cut:], False)]
        else:
            if not full.startswith(done):
                raise DataError(f"{at}: the chat template does not render this conversation turn by turn")
            pieces.append((full[len(done) :], False))
        done = full
    while pieces and not pieces[-1][1]:  # nothing to learn after the last assistant message
        pieces.pop()
    return tuple(p for p in pieces if p[0])


def end_of_turn(tokenizer) -> str:
    """The text the chat template writes right after an assistant message (``<|im_end|>``,
    ``<|eot_id|>``, ...), without the newline; the tokenizer's eos when the template writes nothing."""
    marker = "\ue000"
    messages = [{"role": "user", "content": "x"}, {"role": "assistant", "content": marker}]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    tail = text.split(marker, 1)[1].split("\n", 1)[0].strip() if marker in text else ""
    return tail or (tokenizer.eos_token or "")
