"""The `dataset` task: TRL standard / conversational rows, verl parquet, saved datasets, CSV; bad rows named."""

import csv
import json

import pytest

datasets = pytest.importorskip("datasets")

from rlvr.errors import DataError  # noqa: E402
from rlvr.rollout import prompt_ids  # noqa: E402
from rlvr.tasks import make_task  # noqa: E402


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_trl_standard_rows_keep_every_column_and_hash_split(tmp_path):
    rows = [{"prompt": f"What is {i} + {i}?", "solution": str(2 * i), "level": i % 3} for i in range(100)]
    path = write_jsonl(tmp_path / "std.jsonl", rows)
    task = make_task("dataset", path=path, eval_size=5, eval_percent=10)
    train, held = task.split("train"), task.split("eval")
    assert len(held) == 5
    assert not {e.meta["prompt"] for e in train} & {e.meta["prompt"] for e in held}
    assert len(train) + len([r for r in rows if r["prompt"] in {e.meta["prompt"] for e in held}]) <= 100
    first = train[0]
    assert first.id == "std:0" and first.prompt == [{"role": "user", "content": "What is 0 + 0?"}]
    assert first.answer == "0"  # auto: `solution` is the first answer column present
    assert first.meta == {"solution": "0", "level": 0, "prompt": "What is 0 + 0?"}
    assert not first.raw_prompt
    # the same split whatever the seed's draw order: the held-out pool depends on the text only
    again = make_task("dataset", path=path, eval_size=5, eval_percent=10, seed=3).split("train")
    assert [e.id for e in again] == [e.id for e in train]


def test_conversational_parquet_with_system_prompt_instruction_and_template_kwargs(tmp_path):
    rows = [{"prompt": [{"role": "user", "content": f"Compute {i}*3"}], "answer": 3 * i} for i in range(30)]
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "conv.parquet"))
    task = make_task(
        "dataset", path=str(tmp_path / "conv.parquet"), system_prompt="Be brief.", instruction=" Box it.",
        chat_template_kwargs={"enable_thinking": False}, eval_size=2, eval_percent=20,
    )  # fmt: skip
    example = task.split("train")[0]
    assert example.prompt == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Compute 0*3 Box it."},
    ]
    assert example.answer == "0"  # a number column becomes its JSON text
    assert example.meta["answer"] == 0 and example.meta["prompt"] == rows[0]["prompt"]
    assert example.chat_template_kwargs == {"enable_thinking": False}


def test_verl_parquet_layout_reads_the_nested_ground_truth(tmp_path):
    rows = [
        {
            "data_source": "openai/gsm8k",
            "prompt": [{"role": "user", "content": f"question {i}"}],
            "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": str(10 + i)},
            "extra_info": {"split": "train", "index": i},
        }
        for i in range(20)
    ]
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "train.parquet"))
    datasets.Dataset.from_list(rows[:3]).to_parquet(str(tmp_path / "test.parquet"))
    task = make_task("dataset", path=str(tmp_path / "train.parquet"), eval_path=str(tmp_path / "test.parquet"))
    train, held = task.split("train"), task.split("eval")
    assert [e.answer for e in held] == ["10", "11", "12"]
    assert len(train) == 17  # rows whose prompt is held out are dropped from train
    assert train[0].meta["data_source"] == "openai/gsm8k" and train[0].meta["extra_info"]["index"] == 3


def test_saved_dataset_dict_and_csv(tmp_path):
    rows = [{"question": f"q {i}?", "answer": f"because #### {i}"} for i in range(12)]
    ds = datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(rows[:8]), "test": datasets.Dataset.from_list(rows[8:])}
    )
    ds.save_to_disk(str(tmp_path / "saved"))
    task = make_task("dataset", path=str(tmp_path / "saved"), eval_split="test")
    assert [e.answer for e in task.split("eval")] == ["8", "9", "10", "11"]  # GSM8K's #### convention
    assert task.split("train")[0].id == "saved/train:0"
    with pytest.raises(DataError, match="no split 'validation'"):
        make_task("dataset", path=str(tmp_path / "saved"), split="validation")
    with open(tmp_path / "qa.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["problem", "target"])
        writer.writerows([f"p{i}", str(i)] for i in range(30))
    task = make_task("dataset", path=str(tmp_path / "qa.csv"), eval_size=2, eval_percent=30)
    assert task.split("eval")[0].meta["prompt"].startswith("p")


def test_standard_rows_without_the_chat_template_are_the_model_input_as_is(tmp_path):
    from rlvr.models import load_model

    path = write_jsonl(tmp_path / "raw.jsonl", [{"prompt": f"2 + {i} =", "answer": str(2 + i)} for i in range(40)])
    example = make_task("dataset", path=path, chat_template=False, eval_percent=10, eval_size=1).split("train")[0]
    assert example.raw_prompt
    _, tokenizer = load_model("tiny-random")
    assert tokenizer.decode(prompt_ids(tokenizer, example)) == tokenizer.decode(
        tokenizer(example.meta["prompt"])["input_ids"]
    )
    templated = make_task("dataset", path=path, eval_percent=10, eval_size=1).split("train")[0]
    assert len(prompt_ids(tokenizer, templated)) > len(prompt_ids(tokenizer, example))  # template tokens added


@pytest.mark.parametrize(
    ("content", "field", "message"),
    [
        ('{"prompt": "a", "answer": "1"}\n{"prompt": "b", "answer": \n', {}, "line 2: invalid JSON"),
        ('{"prompt": "a", "answer": "1"}\n{"prompt": "", "answer": "2"}\n', {}, "line 2: field 'prompt' is empty"),
        ('{"prompt": "a", "answer": "1"}\n{"prompt": 5, "answer": "2"}\n', {}, "line 2: field 'prompt' must be"),
        ('{"prompt": "a", "answer": "1"}\n', {"answer_field": "gold"}, "line 1: missing field 'gold'"),
        ('{"text": "a", "label": "1"}\n', {}, "set task.prompt_field"),
        ('{"prompt": [{"role": "robot", "content": "x"}], "answer": "1"}\n', {}, "line 1: prompt\\[0\\] has role"),
        ('{"prompt": [{"role": "user", "content": [{"type": "image"}]}], "answer": "1"}\n', {}, "images"),
    ],
)
def test_malformed_rows_name_the_file_and_line(tmp_path, content, field, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as err:
        make_task("dataset", path=str(path), eval_percent=50, eval_size=0, **field)
    assert str(path) in str(err.value)


def test_missing_file_and_unknown_type(tmp_path):
    with pytest.raises(DataError, match="not found"):
        make_task("dataset", path=str(tmp_path / "none.jsonl"))
    (tmp_path / "data.xml").write_text("<a/>")
    with pytest.raises(DataError, match="unknown dataset file type '.xml'"):
        make_task("dataset", path=str(tmp_path / "data.xml"))


def test_answer_field_null_reads_data_without_gold(tmp_path):
    path = write_jsonl(tmp_path / "open.jsonl", [{"prompt": f"write {i}", "tests": [f"t{i}"]} for i in range(20)])
    train = make_task("dataset", path=path, answer_field=None, eval_percent=20, eval_size=1).split("train")
    assert train[0].answer == "" and train[0].meta["tests"] == ["t0"]


def test_gsm8k_style_rows_give_the_jsonl_tasks_examples(tmp_path):
    rows = [
        {"question": f"Tom has {i} apples. How many?", "answer": f"He has {i}.\n#### {i:,}"} for i in range(1000, 1060)
    ]
    train_file = write_jsonl(tmp_path / "train.jsonl", rows[:50])
    eval_file = write_jsonl(tmp_path / "test.jsonl", rows[50:])
    instruction = " Put the final answer in \\boxed{}."
    ours = make_task("dataset", path=train_file, eval_path=eval_file, instruction=instruction)
    theirs = make_task("jsonl", path=train_file, eval_path=eval_file, instruction=instruction)
    for split in ("train", "eval"):
        a, b = ours.split(split), theirs.split(split)
        assert [(e.prompt, e.answer) for e in a] == [(e.prompt, e.answer) for e in b]
    assert ours.split("eval")[0].answer == "1050"  # thousands comma dropped after ####


def test_template_kwargs_must_be_plain_values(tmp_path):
    import datetime

    from rlvr.errors import ConfigError

    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": f"p{i}", "answer": "1"} for i in range(20)])
    with pytest.raises(ConfigError, match="task.chat_template_kwargs must hold plain values"):
        make_task("dataset", path=path, chat_template_kwargs={"when": datetime.date(2026, 1, 1)})


@pytest.mark.parametrize("key", ["path", "prompt_field", "eval_path", "answer_field", "system_prompt"])
def test_a_non_string_key_is_a_config_error(key):
    from rlvr.errors import ConfigError

    params = {"path": "x.jsonl", key: 5}
    with pytest.raises(ConfigError, match=f"task.{key} must be"):
        make_task("dataset", **params)
