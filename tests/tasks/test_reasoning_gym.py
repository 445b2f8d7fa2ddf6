"""Task and reward ``reasoning_gym``: splits, mixtures, JSON meta, reasoning-gym's verifiers, errors."""

import json
import subprocess
import sys
from collections import Counter

import pytest

from rlvr.errors import ConfigError, DataError, RewardError
from rlvr.rewards import score
from rlvr.rewards.reasoning_gym import extract_tagged_answer, reasoning_gym_reward
from rlvr.tasks import make_task
from rlvr.tasks.reasoning_gym import SPLIT_OFFSET, from_json, shares, to_json
from rlvr.types import Example

pytest.importorskip("reasoning_gym")

SMALL_SUMS = {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 2}


def questions(examples) -> list[str]:
    return [ex.meta["entry"]["question"] for ex in examples]


@pytest.fixture(scope="module")
def task():
    return make_task("reasoning_gym", dataset="chain_sum", config=SMALL_SUMS, train_size=200, eval_size=50)


def test_deterministic_given_seed(task):
    again = make_task("reasoning_gym", dataset="chain_sum", config=SMALL_SUMS, train_size=200, eval_size=50)
    assert task.split("train") == again.split("train") and task.split("eval") == again.split("eval")
    other = make_task("reasoning_gym", dataset="chain_sum", config=SMALL_SUMS, train_size=200, eval_size=50, seed=1)
    assert questions(other.split("eval")) != questions(task.split("eval"))


def test_splits_use_disjoint_generator_seeds_and_questions(task):
    train, held = task.split("train"), task.split("eval")
    assert len(train) == 200 and len(held) == 50
    assert len(set(questions(held))) == 50  # eval questions are distinct
    assert not set(questions(train)) & set(questions(held))
    (eval_seed,) = {ex.meta["seed"] for ex in held}
    assert {ex.meta["seed"] for ex in train} == {eval_seed + SPLIT_OFFSET} and eval_seed < SPLIT_OFFSET
    assert len({ex.id for ex in train}) == 200 and task.verifier == "reasoning_gym"


def test_train_items_whose_question_is_in_eval_are_dropped():
    """One-digit sums a +- b: 10 x 10 x 2 = 200 questions. Eval holds 150 of them, so most train draws repeat
    an eval question: train must skip them (indices beyond 0..99) and keep none."""
    config = {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}
    small = make_task("reasoning_gym", dataset="chain_sum", config=config, train_size=100, eval_size=150)
    train, held = small.split("train"), small.split("eval")
    assert len(train) == 100 and not set(questions(train)) & set(questions(held))
    assert len(set(questions(train))) <= 50 and max(ex.meta["index"] for ex in train) > 200
    with pytest.raises(DataError, match=r"task.eval_size: .*'chain_sum' gave only 200 distinct questions"):
        make_task("reasoning_gym", dataset="chain_sum", config=config, train_size=0, eval_size=201)


def test_config_reaches_the_generator(task):
    assert {ex.meta["entry"]["metadata"]["num_terms"] for ex in task.split("train")} == {2}
    assert all(ex.meta["config"] == SMALL_SUMS for ex in task.split("eval"))
    assert all(ex.prompt[0]["content"].endswith("<answer></answer> tags.") for ex in task.split("eval"))


@pytest.mark.parametrize(
    ("weights", "total", "expected"),
    [
        ({"a": 3, "b": 1}, 100, {"a": 75, "b": 25}),
        ({"a": 3, "b": 1}, 10, {"a": 8, "b": 2}),  # 7.5 / 2.5: the tie goes to the first listed
        ({"a": 1, "b": 1, "c": 1}, 10, {"a": 4, "b": 3, "c": 3}),
        ({"a": 0.7, "b": 0.2, "c": 0.1}, 7, {"a": 5, "b": 1, "c": 1}),  # 4.9 1.4 0.7: remainders .9 and .7 win
        ({"a": 1, "b": 1}, 0, {"a": 0, "b": 0}),
    ],
)
def test_shares_by_largest_remainder(weights, total, expected):
    assert shares(weights, total) == expected


def test_mixture_counts_follow_the_weights_exactly():
    mix = make_task(
        "reasoning_gym",
        datasets={"chain_sum": 3, "leg_counting": 1},
        config={"chain_sum": SMALL_SUMS},
        train_size=40,
        eval_size=12,
    )
    train, held = mix.split("train"), mix.split("eval")
    assert Counter(ex.meta["source_dataset"] for ex in train) == {"chain_sum": 30, "leg_counting": 10}
    assert Counter(ex.meta["source_dataset"] for ex in held) == {"chain_sum": 9, "leg_counting": 3}
    assert [ex.meta["source_dataset"] for ex in train] != sorted(ex.meta["source_dataset"] for ex in train)
    assert all(ex.meta["entry"]["metadata"]["source_dataset"] == ex.meta["source_dataset"] for ex in train)
    sums = [ex for ex in train if ex.meta["source_dataset"] == "chain_sum"]
    assert {ex.meta["entry"]["metadata"]["num_terms"] for ex in sums} == {2}
    assert {json.dumps(ex.meta["config"]) for ex in train if ex.meta["source_dataset"] == "leg_counting"} == {"{}"}


def test_json_tags_restore_tuples_sets_and_non_string_keys():
    import numpy as np

    value = {"grid": ((1, 2), (3, 4)), "seen": {3, 1}, "by_id": {1: "a", 2: [("x",)]}, "f": np.float64(0.5)}
    value["n"] = np.int64(3)
    stored = to_json(value)
    assert stored["grid"] == {"__tuple__": [{"__tuple__": [1, 2]}, {"__tuple__": [3, 4]}]}
    assert stored["seen"] == {"__set__": [1, 3]} and type(stored["f"]) is float and type(stored["n"]) is int
    restored = from_json(json.loads(json.dumps(stored)))
    assert restored == {"grid": ((1, 2), (3, 4)), "seen": {1, 3}, "by_id": {1: "a", 2: [("x",)]}, "f": 0.5, "n": 3}
    assert type(restored["grid"]) is tuple and type(restored["by_id"][2][0]) is tuple
    with pytest.raises(DataError, match=r"entry.bad: a object value that rlvr cannot store as JSON"):
        to_json({"bad": object()})


def test_meta_is_json_and_gives_the_generator_entry_back(task):
    import reasoning_gym

    for ex in task.split("eval")[:5]:
        meta = json.loads(json.dumps(ex.meta))
        generator = reasoning_gym.create_dataset("chain_sum", seed=meta["seed"], size=meta["index"] + 1, **SMALL_SUMS)
        assert from_json(meta["entry"]) == generator[meta["index"]]


def test_arc_grids_score_after_a_json_round_trip():
    """ARC's verifier compares tuples of tuples: the tags keep its gold answer at 1.0 after JSON."""
    arc = make_task("reasoning_gym", dataset="arc_agi", train_size=0, eval_size=2)
    for ex in arc.split("eval"):
        restored = Example(ex.id, ex.prompt, ex.answer, json.loads(json.dumps(ex.meta)))
        assert reasoning_gym_reward(f"<answer>{ex.answer}</answer>", restored) == 1.0


def sums_example(answer: str = "5", name: str = "chain_sum") -> Example:
    entry = {"question": "State the final answer to the following arithmetic problem: 2 + 3 =", "answer": answer}
    entry["metadata"] = {"source_dataset": name}
    meta = {"source_dataset": name, "entry": entry}
    return Example("hand-0", [{"role": "user", "content": entry["question"]}], answer, meta)


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("2 + 3 is five. <answer>5</answer>", 1.0),
        ("<answer> 5 </answer>", 1.0),
        ("<ANSWER>5</ANSWER>", 1.0),
        ("<answer>+05.00</answer>", 1.0),  # chain_sum's verifier: Decimal equality
        ("<answer>4</answer> no, <answer>5</answer>", 1.0),  # the last one counts
        ("<answer>5</answer> <answer> </answer>", 1.0),  # ... the last non-empty one
        ("\\boxed{5}", 1.0),  # the fallback
        ("<answer>6</answer>", 0.0),
        ("<answer>4</answer> \\boxed{5}", 0.0),  # the tag wins over the box
        ("The answer is 5.", 0.0),  # no tag: 0, whatever the text says
        ("<answer>5", 0.0),  # cut off before the closing tag
        ("<answer>15</answer>", 0.5),  # reasoning-gym's partial credit: gold inside the answer, len 1 / 2
    ],
)
def test_reward_on_hand_made_answers(completion, expected):
    assert reasoning_gym_reward(completion, sums_example()) == expected


@pytest.mark.parametrize(
    ("text", "fallback", "expected"),
    [
        ("<answer>a</answer>\\boxed{b}", "boxed", "a"),
        ("<answer>a</answer> 7", "last_number", "a"),  # a tag always wins
        ("\\boxed{b}", "none", None),
        ("2 + 5 = 7.", "boxed", None),
        ("2 + 5 = 7.", "last_number", "7"),
        ("\\boxed{b} 7", "last_number", "b"),
        ("no number", "last_number", None),
    ],
)
def test_fallbacks(text, fallback, expected):
    assert extract_tagged_answer(text, fallback=fallback) == expected


def test_fallback_is_a_checked_hyper_parameter():
    assert reasoning_gym_reward("\\boxed{5}", sums_example(), fallback="none") == 0.0
    assert reasoning_gym_reward("2 + 3 = 5", sums_example(), fallback="last_number") == 1.0
    with pytest.raises(ConfigError, match=r"fallback"):
        score(["x"], [sums_example()], [("reasoning_gym", 1.0, {"fallback": "last_line"})])


def test_a_raise_the_model_answer_caused_is_zero():
    """prime_factorization int()s each factor: 'two' raises ValueError, and its gold scores: 0.0."""
    example = sums_example("2 × 3", "prime_factorization")
    assert reasoning_gym_reward("<answer>2 × 3</answer>", example) == 1.0
    assert reasoning_gym_reward("<answer>two × 3</answer>", example) == 0.0


class Raises:
    """A verifier that raises on every answer, or on all but ``ok``."""

    def __init__(self, ok: str | None = None):
        self.ok = ok

    def score_answer(self, answer, entry):
        if answer == self.ok:
            return 1.0
        raise KeyError("metadata")


def test_a_raise_on_the_gold_answer_too_is_a_bug(monkeypatch):
    import rlvr.rewards.reasoning_gym as module

    monkeypatch.setattr(module, "_scorer", lambda name, options: Raises(ok="5"))
    assert reasoning_gym_reward("<answer>6</answer>", sums_example()) == 0.0
    monkeypatch.setattr(module, "_scorer", lambda name, options: Raises())
    with pytest.raises(RewardError, match=r"reward 'reasoning_gym' raised KeyError: 'metadata' on example 'hand-0'"):
        score(["<answer>6</answer>"], [sums_example()], [("reasoning_gym", 1.0)])
    no_gold = sums_example()
    no_gold.meta["entry"]["answer"] = None  # boxnet, rush_hour: no single gold to try
    with pytest.raises(KeyError):
        reasoning_gym_reward("<answer>6</answer>", no_gold)


def test_reward_needs_reasoning_gym_meta():
    plain = Example("x-1", [{"role": "user", "content": "2 + 3?"}], "5")
    with pytest.raises(RewardError, match=r"needs example.meta\['source_dataset'\] and \['entry'\]"):
        score(["<answer>5</answer>"], [plain], [("reasoning_gym", 1.0)])


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"dataset": "basic_arithmetc"},
            r"task.dataset: unknown reasoning-gym dataset 'basic_arithmetc'. Did you mean "
            r"basic_arithmetic, ",
        ),
        ({}, r"set exactly one of task.dataset \(a name\) or task.datasets"),
        ({"dataset": "chain_sum", "datasets": {"gcd": 1}}, r"set exactly one of task.dataset"),
        ({"dataset": "composite"}, r"unknown reasoning-gym dataset 'composite'"),
        ({"datasets": {"chain_sum": 0}}, r"task.datasets.chain_sum: the weight must be a positive number, got 0"),
        ({"datasets": {}}, r"task.datasets must be a non-empty mapping"),
        ({"datasets": {"chain_sum": 1, "leg_countin": 1}}, r"task.datasets: unknown .*Did you mean leg_counting[,?]"),
        (
            {"dataset": "chain_sum", "config": {"max_termz": 3}},
            r"task.config.max_termz: not an option of reasoning-gym "
            r"dataset 'chain_sum'. Did you mean max_terms, .* Valid: min_terms, max_terms, ",
        ),
        ({"dataset": "chain_sum", "config": {"seed": 3}}, r"task.config.seed: set by the task \(use task.seed"),
        (
            {"dataset": "chain_sum", "config": {"min_terms": 0}},
            r"task.config: reasoning-gym dataset 'chain_sum' rejects "
            r"options \{'min_terms': 0\}: min_terms must be positive",
        ),
        (
            {"datasets": {"chain_sum": 1}, "config": {"gcd": {}}},
            r"task.config.gcd: not one of task.datasets \(chain_sum\)",
        ),
        (
            {"datasets": {"chain_sum": 1}, "config": {"chain_sum": {"max_termz": 3}}},
            r"task.config.chain_sum.max_termz:",
        ),
        ({"dataset": "chain_sum", "train_size": -1}, r"task.train_size must be an integer >= 0, got -1"),
    ],
)
def test_bad_config_names_the_key(params, message):
    with pytest.raises(ConfigError, match=message):
        make_task("reasoning_gym", **{"train_size": 4, "eval_size": 4, **params})


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "reasoning_gym", None)  # import reasoning_gym -> ImportError
    with pytest.raises(ConfigError, match=r"needs the reasoning-gym package .*pip install 'rlvr\[reasoning-gym\]'"):
        make_task("reasoning_gym", dataset="chain_sum")


def test_importing_rlvr_does_not_import_reasoning_gym():
    code = "import sys, rlvr.tasks, rlvr.rewards, rlvr.trainer, rlvr.cli; print('reasoning_gym' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_tiny_random_trains_two_steps_on_it(tmp_path):
    from rlvr.config import load_config
    from rlvr.metrics import read_metrics
    from rlvr.trainer import train
    from tests.conftest import TINY_OVERRIDES

    overrides = [
        *TINY_OVERRIDES, "rewards=[{name: reasoning_gym, weight: 1.0}]", "eval.verifier=reasoning_gym",
        "eval.before=true", "task.train_size=16", "task.eval_size=8", "train.steps=2", "checkpoint.export_final=false",
        "log.samples_every=1",
    ]  # fmt: skip
    run_dir = train(load_config("reasoning_gym", overrides), tmp_path / "run")
    rows = read_metrics(run_dir / "metrics.jsonl")
    assert len([r for r in rows if "train/reward" in r]) == 2
    accuracies = [r["eval/accuracy"] for r in rows if "eval/accuracy" in r]
    assert len(accuracies) == 2 and all(0.0 <= a <= 1.0 for a in accuracies)  # before and after
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert samples and all(s["id"].startswith("basic_arithmetic-train-") for s in samples)


def test_a_score_outside_0_1_is_a_bug(monkeypatch):
    import rlvr.rewards.reasoning_gym as module

    class TooHigh:
        def score_answer(self, answer, entry):
            return 2.0

    monkeypatch.setattr(module, "_scorer", lambda name, options: TooHigh())
    with pytest.raises(RewardError, match=r"reasoning-gym dataset 'chain_sum' scored 2.0, not a number in \[0, 1\]"):
        score(["<answer>5</answer>"], [sums_example()], [("reasoning_gym", 1.0)])
