import json
from pathlib import Path

import pytest

from rlvr.errors import DataError
from rlvr.tasks import make_task
from rlvr.tasks.jsonl import gold_answer

GSM8K = Path("/work/shared/data/gsm8k")


def write(path: Path, lines: list[str]) -> str:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


def rows(n: int, start: int = 0) -> list[str]:
    return [
        json.dumps({"question": f"What is {i} + {i}?", "answer": f"{i}+{i}={2 * i}\n#### {2 * i}"})
        for i in range(start, start + n)
    ]


def test_gold_answer():
    assert gold_answer("Some work\n#### 1,234") == "1234"
    assert gold_answer("a #### 1 #### 72 ") == "72"
    assert gold_answer("  (1, 2) ") == "(1, 2)"


def test_missing_file(tmp_path):
    path = str(tmp_path / "nope.jsonl")
    with pytest.raises(DataError) as e:
        make_task("jsonl", path=path)
    assert str(e.value) == f"task file not found: {path}"


def test_bad_json_names_line(tmp_path):
    path = write(tmp_path / "bad.jsonl", [*rows(2), '{"question": "x", "answer": ', *rows(1)])
    with pytest.raises(DataError) as e:
        make_task("jsonl", path=path)
    assert str(e.value).startswith(f"{path} line 3: invalid JSON (")


def test_not_an_object(tmp_path):
    path = write(tmp_path / "list.jsonl", ["[1, 2]"])
    with pytest.raises(DataError) as e:
        make_task("jsonl", path=path)
    assert str(e.value) == f"{path} line 1: expected a JSON object, got list"


def test_missing_field_names_it_and_the_fields_present(tmp_path):
    path = write(tmp_path / "field.jsonl", [*rows(1), json.dumps({"question": "q", "solution": "4"})])
    with pytest.raises(DataError) as e:
        make_task("jsonl", path=path)
    assert str(e.value) == f"{path} line 2: missing field 'answer' (fields present: 'question', 'solution')"


def test_empty_file(tmp_path):
    for name, lines in (("empty.jsonl", []), ("blank.jsonl", ["", "   "])):
        path = write(tmp_path / name, lines)
        with pytest.raises(DataError) as e:
            make_task("jsonl", path=path)
        assert str(e.value) == f"{path} has no rows"


def test_hash_split_disjoint_deterministic_in_file_order(tmp_path):
    path = write(tmp_path / "qa.jsonl", rows(500))
    task = make_task("jsonl", path=path, eval_size=20, eval_percent=20)
    train, held = task.split("train"), task.split("eval")
    assert len(held) == 20 and 300 < len(train) < 480
    train_texts = {ex.prompt[0]["content"] for ex in train}
    assert not train_texts & {ex.prompt[0]["content"] for ex in held}
    lines = [ex.meta["line"] for ex in train]
    assert lines == sorted(lines) and [ex.meta["line"] for ex in held] == sorted(ex.meta["line"] for ex in held)
    assert make_task("jsonl", path=path, eval_size=20, eval_percent=20).split("eval") == held
    # which rows are held out does not depend on the seed, only which of them are used
    other = make_task("jsonl", path=path, eval_size=20, eval_percent=20, seed=1)
    assert {ex.id for ex in other.split("train")} == {ex.id for ex in train}


def test_example_fields(tmp_path):
    path = write(
        tmp_path / "qa.jsonl",
        [json.dumps({"q": " Two plus two? ", "a": 4}), json.dumps({"q": "1+1?", "a": "2"})],
    )
    task = make_task(
        "jsonl",
        path=path,
        eval_path=path,
        eval_size=1,
        question_field="q",
        answer_field="a",
        instruction=" Box it.",
    )
    ex = task.split("eval")[0]
    assert ex.id == "qa:1"
    assert ex.prompt == [{"role": "user", "content": "Two plus two? Box it."}]
    assert ex.answer == "4"
    assert [e.id for e in task.split("train")] == ["qa:2"]


def test_eval_path_first_rows_and_no_overlap(tmp_path):
    train_path = write(tmp_path / "train.jsonl", rows(50))
    eval_path = write(tmp_path / "test.jsonl", rows(30, start=40))
    task = make_task("jsonl", path=train_path, eval_path=eval_path, eval_size=5)
    held = task.split("eval")
    assert [ex.id for ex in held] == [f"test:{i}" for i in range(1, 6)]
    train = task.split("train")
    assert len(train) == 45  # questions 40..44 are in eval and dropped from train
    assert not {ex.prompt[0]["content"] for ex in train} & {ex.prompt[0]["content"] for ex in held}


@pytest.mark.skipif(not (GSM8K / "train.jsonl").is_file(), reason=f"GSM8K not present at {GSM8K}")
def test_real_gsm8k():
    task = make_task("jsonl", path=str(GSM8K / "train.jsonl"), eval_path=str(GSM8K / "test.jsonl"))
    train, held = task.split("train"), task.split("eval")
    assert len(train) == 7473 and len(held) == 200
    assert train[0].answer == "72" and train[0].id == "train:1"
    assert train[0].prompt[0]["content"].endswith(" Put the final answer in \\boxed{}.")
    assert all(ex.answer.lstrip("-").replace(".", "", 1).isdigit() for ex in train + held)
