"""Demonstration files: the row shapes, which tokens are trained, and one-line errors (rlvr.demos.files)."""

import json
import re

import pytest

from rlvr.demos import prompt_key, render
from rlvr.demos.files import read_demonstrations
from rlvr.errors import DataError
from rlvr.models import tiny_random


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_random(0)[1]


def write(tmp_path, rows, name="demos.jsonl"):
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


def trained_text(tokenizer, completion) -> str:
    return tokenizer.decode([t for t, m in zip(completion.token_ids, completion.loss_mask, strict=True) if m])


def masked_text(tokenizer, completion) -> str:
    return tokenizer.decode([t for t, m in zip(completion.token_ids, completion.loss_mask, strict=True) if not m])


def test_prompt_and_completion_strings(tmp_path, tokenizer):
    path = write(tmp_path, [{"prompt": "What is 2 + 2?", "completion": "2 + 2 = 4. \\boxed{4}", "answer": "4"}])
    (demo,) = read_demonstrations(path, tokenizer)
    assert demo.example.prompt == [{"role": "user", "content": "What is 2 + 2?"}]
    assert demo.example.answer == "4" and demo.example.id == "demos:0"
    c = render(tokenizer, demo)
    assert trained_text(tokenizer, c) == "2 + 2 = 4. \\boxed{4}<|im_end|>"  # the end of turn is trained
    assert c.token_ids[-1] == tokenizer.eos_token_id and all(c.loss_mask) and c.origin == "demo"
    header = "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n"
    assert tokenizer.decode(c.prompt_ids).endswith(header)


def test_tool_pieces_are_masked_and_left_out_of_the_response(tmp_path, tokenizer):
    completion = [
        {"role": "assistant", "content": "```python\nprint(6 * 7)\n```\n"},
        {"role": "tool", "content": "```output\n42\n```\n"},
        {"role": "assistant", "content": "\\boxed{42}"},
    ]
    path = write(tmp_path, [{"prompt": [{"role": "user", "content": "6 * 7?"}], "completion": completion}])
    (demo,) = read_demonstrations(path, tokenizer)
    c = render(tokenizer, demo)
    assert masked_text(tokenizer, c) == "```output\n42\n```\n"
    assert trained_text(tokenizer, c) == "```python\nprint(6 * 7)\n```\n\\boxed{42}<|im_end|>"
    assert c.response == "```python\nprint(6 * 7)\n```\n\\boxed{42}"  # what rewards score: no tool output
    assert c.text == "```python\nprint(6 * 7)\n```\n```output\n42\n```\n\\boxed{42}"


def test_a_conversation_trains_only_the_assistant_turns(tmp_path, tokenizer):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
    ]
    (demo,) = read_demonstrations(write(tmp_path, [{"messages": messages}]), tokenizer)
    c = render(tokenizer, demo)
    assert trained_text(tokenizer, c) == "Hello.<|im_end|>4<|im_end|>"
    assert masked_text(tokenizer, c) == "\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"
    whole = tokenizer.apply_chat_template(messages, tokenize=False)
    assert tokenizer.decode(c.prompt_ids + c.token_ids) == whole.rstrip("\n")  # the template's own rendering
    assert prompt_key(demo.example) == "Hi"  # matched to a task prompt by its last user message


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ('{"prompt": "x"', "line 2: invalid JSON"),
        ({"prompt": "x"}, "line 2: a demonstration needs 'messages', or 'prompt' and 'completion'"),
        ({"prompt": "", "completion": "y"}, "line 2: 'prompt' must be a non-empty string"),
        ({"prompt": "x", "completion": [{"role": "user", "content": "y"}]}, "completion[0] has role 'user'"),
        ({"prompt": "x", "completion": [{"role": "tool", "content": "y"}]}, "no assistant message to train on"),
        ({"messages": [{"role": "assistant", "content": "y"}]}, "needs prompt messages followed by an assistant"),
        ({"prompt": [{"role": "user", "content": 3}], "completion": "y"}, "prompt[0] content must be a string"),
        ({"prompt": [{"role": "robot", "content": "x"}], "completion": "y"}, "prompt[0] has role 'robot'"),
    ],
)
def test_a_bad_row_names_the_file_and_line(tmp_path, tokenizer, row, message):
    path = write(tmp_path, [{"prompt": "ok", "completion": "fine"}, row])
    with pytest.raises(DataError, match=re.escape(message)) as err:
        read_demonstrations(path, tokenizer)
    assert str(err.value).startswith(f"{path} line 2") and "\n" not in str(err.value)


def test_missing_and_empty_files(tmp_path, tokenizer):
    with pytest.raises(DataError, match="demonstrations file not found"):
        read_demonstrations(str(tmp_path / "nope.jsonl"), tokenizer)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DataError, match="has no demonstrations"):
        read_demonstrations(str(empty), tokenizer)


def test_parquet_through_datasets(tmp_path, tokenizer):
    datasets = pytest.importorskip("datasets")
    path = tmp_path / "demos.parquet"
    datasets.Dataset.from_list([{"prompt": "What is 1 + 1?", "completion": "\\boxed{2}", "answer": "2"}]).to_parquet(
        str(path)
    )
    (demo,) = read_demonstrations(str(path), tokenizer)
    assert demo.segments == (("\\boxed{2}", True),) and demo.example.answer == "2"


def test_line_numbers_count_blank_lines(tmp_path, tokenizer):
    path = tmp_path / "gaps.jsonl"
    path.write_text('{"prompt": "a", "completion": "b"}\n\n{"prompt": "a"}\n')
    with pytest.raises(DataError, match=re.escape(f"{path} line 3: a demonstration needs")):
        read_demonstrations(str(path), tokenizer)
    path.write_text('{"prompt": "a", "completion": "b"}\nnull\n')
    with pytest.raises(DataError, match=re.escape(f"{path} line 2: expected a JSON object, got NoneType")):
        read_demonstrations(str(path), tokenizer)
