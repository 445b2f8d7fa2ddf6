import ast
import operator
import re

import pytest

from rlvr.errors import ConfigError, DataError
from rlvr.tasks import TASKS, Task, is_eval_key, make_task
from rlvr.tasks.arithmetic import INSTRUCTION, TEMPLATES

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}


def recompute(expr: str) -> int:
    """Independent check of the gold answer: Python's own precedence, via the ast."""

    def walk(node: ast.expr) -> int:
        if isinstance(node, ast.BinOp):
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        assert isinstance(node, ast.Constant)
        return node.value

    return walk(ast.parse(expr, mode="eval").body)


def texts(examples) -> list[str]:
    return [ex.prompt[0]["content"] for ex in examples]


def test_registered_and_protocol():
    assert "arithmetic" in TASKS
    task = make_task("arithmetic", train_size=10, eval_size=5)
    assert isinstance(task, Task)
    assert task.name == "arithmetic"


def test_same_seed_same_splits_other_seed_differs():
    a, b = make_task("arithmetic", seed=3), make_task("arithmetic", seed=3)
    assert a.split("train") == b.split("train")
    assert a.split("eval") == b.split("eval")
    assert make_task("arithmetic", seed=4).split("train") != a.split("train")


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"operators": "+-*"},
        {"digits": 2},
        {"digits": 3},
        {"digits": 1, "operands": 4, "operators": "+-*"},
    ],
)
def test_splits_never_share_a_prompt_and_eval_is_distinct(params):
    task = make_task("arithmetic", **params)
    train, held = task.split("train"), task.split("eval")
    assert len(train) == 2000 and len(held) == 200
    assert not set(texts(train)) & set(texts(held))
    assert len(set(texts(held))) == 200


def test_gold_answers_are_exact_values_with_precedence():
    task = make_task("arithmetic", digits=2, operands=3, operators="+-*", train_size=300, eval_size=100)
    for ex in task.split("train") + task.split("eval"):
        assert ex.answer == str(recompute(ex.meta["expression"]))
        assert re.fullmatch(r"-?\d+", ex.answer)


def test_prompt_shape_ids_and_meta():
    held = make_task("arithmetic").split("eval")
    ex = held[17]
    assert ex.id == "arith-eval-17"
    assert ex.prompt == [
        {
            "role": "user",
            "content": TEMPLATES[ex.meta["template"]].format(expr=ex.meta["expression"]) + INSTRUCTION,
        }
    ]
    assert ex.prompt[0]["content"].endswith(" Give only the final number in \\boxed{}.")
    assert len(TEMPLATES) >= 8
    assert len({e.meta["template"] for e in held}) == len(TEMPLATES)
    assert make_task("arithmetic", train_size=5).split("train")[4].id == "arith-train-4"


def test_small_space_splits_by_expression_and_phrasing():
    """100 one-digit sums: 200 held-out prompts exist only because phrasing is part of the key."""
    task = make_task("arithmetic")
    held = task.split("eval")
    for ex in held:
        assert is_eval_key(f"arithmetic:{ex.meta['expression']}|{ex.meta['template']}", 30)
    assert len({ex.meta["expression"] for ex in held}) < 100


def test_large_space_splits_by_expression():
    task = make_task("arithmetic", digits=3)
    train_exprs = {ex.meta["expression"] for ex in task.split("train")}
    eval_exprs = {ex.meta["expression"] for ex in task.split("eval")}
    assert len(eval_exprs) == 200
    assert not train_exprs & eval_exprs


def test_eval_split_does_not_depend_on_train_size():
    assert make_task("arithmetic", train_size=2000).split("eval") == make_task("arithmetic", train_size=10).split(
        "eval"
    )


def test_too_few_problems_for_eval_size():
    with pytest.raises(DataError, match=r"only \d+ of the 800 distinct problems .* eval_size=500"):
        make_task("arithmetic", eval_size=500)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"operators": "/"}, "operators"),
        ({"operands": 1}, "operands"),
        ({"eval_percent": 0}, "eval_percent"),
        ({"train_size": -1}, "train_size"),
        ({"digit": 2}, "digit"),
    ],
)
def test_bad_params_are_config_errors(params, match):
    with pytest.raises(ConfigError, match=match):
        make_task("arithmetic", **params)


def test_unknown_task_and_split():
    with pytest.raises(ConfigError, match="unknown task 'arithmetics'"):
        make_task("arithmetics")
    with pytest.raises(ConfigError, match="unknown split"):
        make_task("arithmetic", train_size=1, eval_size=1).split("test")  # type: ignore[arg-type]
