import pytest

from rlvr.rewards import score
from rlvr.rewards.countdown import check_countdown
from rlvr.tasks import make_task


@pytest.fixture(scope="module")
def task():
    return make_task("countdown", train_size=500, eval_size=100)


def key(ex) -> tuple:
    return tuple(sorted(ex.meta["numbers"])), ex.meta["target"]


def test_deterministic_given_seed(task):
    again = make_task("countdown", train_size=500, eval_size=100)
    assert task.split("train") == again.split("train")
    assert task.split("eval") == again.split("eval")
    assert make_task("countdown", train_size=500, eval_size=100, seed=1).split("eval") != task.split("eval")


def test_splits_disjoint_and_eval_distinct(task):
    train, held = task.split("train"), task.split("eval")
    assert len(train) == 500 and len(held) == 100
    assert not {ex.prompt[0]["content"] for ex in train} & {ex.prompt[0]["content"] for ex in held}
    assert not {key(ex) for ex in train} & {key(ex) for ex in held}
    assert len({key(ex) for ex in held}) == 100


def test_instances_are_solvable_and_well_formed(task):
    for ex in task.split("train") + task.split("eval"):
        numbers, target = ex.meta["numbers"], ex.meta["target"]
        assert len(numbers) == 4 and all(1 <= n <= 100 for n in numbers)
        assert 1 <= target <= 1000 and ex.answer == str(target)
        assert check_countdown(ex.meta["solution"], numbers, target), ex
        content = ex.prompt[0]["content"]
        assert ", ".join(map(str, numbers)) in content and str(target) in content and "\\boxed{}" in content
        assert ex.meta["solution"] not in content


def test_params_shape_instances():
    held = make_task("countdown", count=3, max_number=9, train_size=0, eval_size=20).split("eval")
    assert all(len(ex.meta["numbers"]) == 3 and max(ex.meta["numbers"]) <= 9 for ex in held)


@pytest.mark.parametrize(
    "expr",
    [
        "(3 + 5) * 3",
        "3 * (5 + 3)",
        "(3 + 5) \\times 3",
        "$(3+5) \\cdot 3$",
        "(3 + 5) * 3 = 24",
        "24 = (3 + 5) * 3",
        "8 * 3",  # not every number has to be used
        "-3 * -8",  # unary minus
    ],
)
def test_verifier_accepts(expr):
    assert check_countdown(expr, [3, 5, 8, 3], 24)


def test_verifier_is_exact_with_fractions():
    assert check_countdown("8 / (1 - 2 / 3)", [1, 2, 3, 8], 24)
    assert check_countdown("12 \\div 6 * 12", [6, 12, 12], 24)
    assert check_countdown("7 / 2 * 2", [7, 2, 2], 7)
    assert not check_countdown("7 / 2", [7, 2], 3)  # 3.5, no rounding


@pytest.mark.parametrize(
    "expr",
    [
        "8 * 3 + 0",  # 0 not given
        "(5 + 5 - 2) * 3",  # 5 used twice, 2 not given
        "8 * 8 / 8 * 3",  # 8 given once
        "(3 + 5) * 3 - 8",  # wrong value
        "(3 + 5) * 3 = 25",
        "__import__('os').system('true')",
        "2 ** 3 * 3",
        "8 ** 3",
        "8.0 * 3",
        "(5 + 3) // 1 * 3",
        "3 / (5 - 5)",
        "",
        "24",  # 24 not given
        "(" * 300 + "3" + ")" * 300,
    ],
)
def test_verifier_rejects(expr):
    assert not check_countdown(expr, [3, 5, 8, 3], 24)


def test_countdown_reward_reads_boxed_then_last_line(task):
    ex = task.split("eval")[0]
    good = f"Let me think.\n\\boxed{{{ex.meta['solution']}}}"
    last_line = f"Let me think.\n{ex.meta['solution']}"
    _, parts = score([good, last_line, "\\boxed{1 + 1}"], [ex, ex, ex], [("countdown", 1.0)])
    assert parts["countdown"] == [1.0, 1.0, 0.0]
