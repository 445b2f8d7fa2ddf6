"""The mixture task: parts labelled by difficulty, interleaved, held-out sides kept."""

import pytest

from rlvr.errors import ConfigError
from rlvr.tasks import make_task


def parts():
    return [
        {"name": "arithmetic", "operands": 2, "eval_size": 10, "train_size": 20, "difficulty": "easy"},
        {"name": "arithmetic", "operands": 3, "eval_size": 10, "train_size": 20, "difficulty": "hard"},
    ]


def test_mixture_interleaves_labelled_parts_and_keeps_each_parts_split():
    task = make_task("mixture", parts=parts())
    easy = make_task("arithmetic", operands=2, eval_size=10, train_size=20)
    held = task.split("eval")
    assert [e.meta["difficulty"] for e in held[:4]] == ["easy", "hard", "easy", "hard"]
    assert len(held) == 20 and len(task.split("train")) == 40
    assert held[0].id == "easy:" + easy.split("eval")[0].id and held[0].prompt == easy.split("eval")[0].prompt
    assert len({e.id for e in held + task.split("train")}) == 60
    assert task.verifier == "math"


def test_mixture_errors_name_the_part():
    bad = parts()
    bad[1]["operandz"] = 3
    with pytest.raises(ConfigError, match=r"part 1: unknown key 'task.operandz'"):
        make_task("mixture", parts=bad)
    with pytest.raises(ConfigError, match="labels repeat"):
        make_task("mixture", parts=[parts()[0], parts()[0]])
    with pytest.raises(ConfigError, match="non-empty list"):
        make_task("mixture", parts=[])


def test_a_prompt_held_out_by_one_part_is_not_trained_on_through_another():
    from rlvr.tasks import TASKS, ListTask
    from rlvr.types import Example

    def ex(text):
        return Example(text, [{"role": "user", "content": text}], "1")

    if "overlap_a" not in TASKS:
        TASKS.register("overlap_a")(lambda: ListTask("overlap_a", train=[ex("y")], eval=[ex("x")]))
        TASKS.register("overlap_b")(lambda: ListTask("overlap_b", train=[ex("x"), ex("z")], eval=[ex("w")]))
    task = make_task("mixture", parts=[{"name": "overlap_a"}, {"name": "overlap_b"}])
    assert [e.prompt[0]["content"] for e in task.split("train")] == ["y", "z"]  # b's "x" is a's held-out problem
    assert [e.prompt[0]["content"] for e in task.split("eval")] == ["x", "w"]
