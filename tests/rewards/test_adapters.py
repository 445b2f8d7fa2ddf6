"""Reward files users already have: TRL-style batched functions and verl's compute_score, unchanged."""

import json
import math
import textwrap

import pytest

from rlvr.errors import ConfigError, RewardError
from rlvr.evaluate import evaluate
from rlvr.rewards import bind_reward, score
from rlvr.rewards.adapters import is_file_reward, trl_inputs
from rlvr.types import Completion, Example

TRL_FILE = '''
import asyncio

CALLS = []

def accuracy_reward(completions, solution, **kwargs):
    """TRL conversational format: completions[i][0]["content"]."""
    CALLS.append(len(completions))
    return [1.0 if s in c[0]["content"] else 0.0 for c, s in zip(completions, solution)]

def level_bonus(prompts, completions, level, **kwargs):
    """None where the reward does not apply (TRL's convention)."""
    return [None if lv == 0 else 0.5 * lv for lv in level]

async def slow_judge(prompts, completions, **kwargs):
    await asyncio.sleep(0.2)
    return [float(len(c[0]["content"]) > 3) for c in completions]

async def slow_judge_2(prompts, completions, **kwargs):
    await asyncio.sleep(0.2)
    return [0.0 for _ in completions]

def strict_args(completions, solution):
    return [0.25 for _ in completions]

def broken(completions, **kwargs):
    raise KeyError("solution")

def short(completions, **kwargs):
    return [1.0]
'''

VERL_FILE = '''
def compute_score(data_source, solution_str, ground_truth, extra_info=None):
    """verl's signature: one completion, the ground truth from reward_model.ground_truth."""
    assert data_source == "openai/gsm8k", data_source
    return {"score": 1.0 if ground_truth in solution_str else 0.0, "acc": True}

def plain(data_source, solution_str, ground_truth, extra_info=None):
    return None if extra_info["index"] == 1 else float(ground_truth in solution_str)
'''


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "trl_rewards.py").write_text(TRL_FILE)
    (tmp_path / "verl_score.py").write_text(VERL_FILE)
    return tmp_path


def example(i: int, conversational: bool = True, **meta) -> Example:
    question = f"question {i}"
    prompt = [{"role": "user", "content": question}]
    return Example(f"ex:{i}", prompt, str(10 + i), {"prompt": prompt if conversational else question, **meta})


def completion(ex: Example, text: str) -> Completion:
    return Completion(ex, text, [1, 2], [5, 6, 7], [0.0] * 3, [1] * 3, "stop")


def test_file_references_are_recognised():
    assert is_file_reward("my_rewards.py:accuracy_reward") and is_file_reward("pkg.mod:fn")
    assert not is_file_reward("math") and not is_file_reward("file.py:") and not is_file_reward(":fn")


def test_trl_batch_gets_the_columns_and_scores_the_whole_batch_in_one_call(files):
    examples = [example(i, solution=str(10 + i), level=i % 2) for i in range(4)]
    items = [completion(e, f"the answer is {10 + i if i < 2 else 0}") for i, e in enumerate(examples)]
    totals, parts = score(items, None, [("trl_rewards.py:accuracy_reward", 1.0), ("trl_rewards.py:level_bonus", 2.0)])
    assert parts["trl_rewards.py:accuracy_reward"] == [1.0, 1.0, 0.0, 0.0]
    bonus = parts["trl_rewards.py:level_bonus"]
    assert math.isnan(bonus[0]) and bonus[1] == 0.5 and math.isnan(bonus[2]) and bonus[3] == 0.5
    assert totals == [1.0, 2.0, 0.0, 1.0]  # None adds nothing; 1 + 2 x 0.5
    import sys

    module = next(
        m for m in sys.modules.values() if (getattr(m, "__file__", None) or "") == str(files / "trl_rewards.py")
    )
    assert module.CALLS == [4]  # batched: one call for four completions


def test_trl_inputs_follow_the_prompt_format():
    standard = example(0, conversational=False, solution="10")
    conversational = example(1, solution="11")
    inputs = trl_inputs([completion(standard, "a"), completion(conversational, "b")], [standard, conversational])
    assert inputs["prompts"] == ["question 0", [{"role": "user", "content": "question 1"}]]
    assert inputs["completions"] == ["a", [{"role": "assistant", "content": "b"}]]
    assert inputs["completion_ids"] == [[5, 6, 7], [5, 6, 7]]
    assert inputs["solution"] == ["10", "11"] and inputs["answer"] == ["10", "11"]
    assert "prompt" not in inputs


def test_async_rewards_run_concurrently(files):
    import time

    examples = [example(i) for i in range(3)]
    items = [completion(e, "long text") for e in examples]
    started = time.perf_counter()
    _, parts = score(items, None, [("trl_rewards.py:slow_judge", 1.0), ("trl_rewards.py:slow_judge_2", 1.0)])
    assert time.perf_counter() - started < 0.35  # two 0.2 s awaits side by side, not 0.4 s
    assert parts["trl_rewards.py:slow_judge"] == [1.0, 1.0, 1.0]


def test_a_function_without_kwargs_gets_only_its_own_arguments(files):
    examples = [example(0, solution="10", other=1)]
    _, parts = score([completion(examples[0], "x")], None, [("trl_rewards.py:strict_args", 1.0)])
    assert parts["trl_rewards.py:strict_args"] == [0.25]


def test_failures_name_the_reward_and_the_batch(files):
    items = [completion(example(0), "x"), completion(example(1), "y")]
    with pytest.raises(
        RewardError, match=r"reward 'trl_rewards.py:broken' raised KeyError.*batch of 2.*'ex:0', completion 'x'"
    ):
        score(items, None, [("trl_rewards.py:broken", 1.0)])
    with pytest.raises(RewardError, match="returned 1 values for a batch of 2"):
        score(items, None, [("trl_rewards.py:short", 1.0)])
    with pytest.raises(ConfigError, match="has no function 'nope'"):
        score(items, None, [("trl_rewards.py:nope", 1.0)])
    with pytest.raises(ConfigError, match="not found"):
        score(items, None, [("missing.py:f", 1.0)])


def test_verl_compute_score_reads_data_source_ground_truth_and_extra_info(files):
    rows = [
        example(i, data_source="openai/gsm8k", reward_model={"ground_truth": str(7 * i)}, extra_info={"index": i})
        for i in range(3)
    ]
    items = [completion(rows[0], "#### 0"), completion(rows[1], "#### 7"), completion(rows[2], "#### 15")]
    _, parts = score(items, None, [("verl_score.py:compute_score", 1.0), ("verl_score.py:plain", 1.0)])
    assert parts["verl_score.py:compute_score"] == [1.0, 1.0, 0.0]  # the dict's "score"
    plain = parts["verl_score.py:plain"]
    assert plain[0] == 1.0 and math.isnan(plain[1]) and plain[2] == 0.0


def test_a_native_reward_returning_none_is_still_an_error(files):
    (files / "native.py").write_text("def forgot(completion, example):\n    pass\n")
    with pytest.raises(RewardError, match="returned NoneType"):
        score([completion(example(0), "x")], None, [("native.py:forgot", 1.0)])


def test_unknown_signature_is_a_config_error(files):
    (files / "odd.py").write_text("def f(text):\n    return 1.0\n")
    with pytest.raises(ConfigError, match="unknown signature"):
        bind_reward("odd.py:f")


class Echo:
    """An engine answering every prompt with a fixed text per call index (for evaluate)."""

    tokenizer = None

    def __init__(self, texts):
        self.texts = texts


def test_evaluate_accepts_a_trl_batch_verifier(files, monkeypatch):
    import rlvr.evaluate

    examples = [example(i, solution=str(10 + i)) for i in range(3)]

    def fake_generate(engine, examples, n, sampling):
        return [[completion(e, f"answer {10 + i if i != 1 else 99}") for _ in range(n)] for i, e in enumerate(examples)]

    monkeypatch.setattr(rlvr.evaluate, "generate", fake_generate)
    result = evaluate(None, examples, "trl_rewards.py:accuracy_reward", None, samples=2)
    assert result.metrics["eval/accuracy"] == pytest.approx(2 / 3)
    assert result.metrics["eval/maj@2"] == pytest.approx(2 / 3)
    assert [r["correct"] for r in result.rows] == [True, True, False, False, True, True]
    assert json.dumps(result.rows)  # the per-sample dump is plain JSON


def test_recipe_with_trl_and_verl_files_trains_end_to_end(files, tiny_config):
    """A TRL-format dataset, a TRL reward file and a verl compute_score used unchanged from a recipe:
    the run learns, and its rewards step for step equal those of the same reward written for rlvr."""
    from rlvr.metrics import read_metrics
    from rlvr.trainer import train

    (files / "data.jsonl").write_text(
        "".join(
            json.dumps({"prompt": [{"role": "user", "content": f"Say {i}"}], "solution": "a"}) + "\n" for i in range(40)
        )
    )
    (files / "starts.py").write_text(
        textwrap.dedent(
            """
            def starts_with_a_or_e(prompts, completions, solution, **kwargs):
                return [1.0 if c[0]["content"].lstrip()[:1].lower() in ("a", "e") else 0.0 for c in completions]

            def compute_score(data_source, solution_str, ground_truth, extra_info=None):
                return float(solution_str.lstrip()[:1].lower() in ("a", "e"))
            """
        )
    )
    # 50 steps: the reward takes off between steps 12 and 31 across seeds and CPUs (fp32 differs by ISA)
    common = ("task={name: dataset, path: data.jsonl, eval_size: 4, eval_percent: 10}", "train.steps=50",
              "checkpoint.export_final=false")  # fmt: skip
    native = train(tiny_config(*common), files / "native")
    config = tiny_config(
        *common,
        "rewards=[{name: 'starts.py:starts_with_a_or_e', weight: 1.0}]",
        "eval.verifier=starts.py:compute_score",
    )
    adapted = train(config, files / "adapted")

    def rewards(run_dir, key):
        return [r[key] for r in read_metrics(run_dir / "metrics.jsonl") if key in r]

    trl = rewards(adapted, "train/reward/starts.py:starts_with_a_or_e")
    assert trl == rewards(native, "train/reward/starts_with_a_or_e")
    assert len(trl) == 50 and sum(trl[:3]) / 3 < 0.3 and sum(trl[-3:]) / 3 > 0.7  # it learns
    assert rewards(adapted, "eval/accuracy") == rewards(native, "eval/accuracy")  # the verl verifier agrees


def test_the_same_relative_name_in_another_directory_loads_that_file(tmp_path, monkeypatch):
    ex = example(0)
    for folder, value in (("one", 0.25), ("two", 0.75)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "r.py").write_text(f"def f(completions, **kw):\n    return [{value}] * len(completions)\n")
        monkeypatch.chdir(tmp_path / folder)
        _, parts = score([completion(ex, "x")], None, [("r.py:f", 1.0)])
        assert parts["r.py:f"] == [value]
