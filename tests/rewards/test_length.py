"""Length rewards (rlvr.rewards.length) against hand-computed values."""

import math

import pytest

from rlvr.errors import RewardError
from rlvr.rewards import GROUP_REWARDS, REWARDS, score
from rlvr.types import Completion, Example, Turn

EXAMPLE = Example(id="q", prompt=[], answer="4", meta={"target_tokens": 10})


def completion(tokens: int, right: bool, finish: str = "stop", tool_tokens: int = 0, budget: int = 20) -> Completion:
    text = "\\boxed{4}" if right else "\\boxed{5}"
    mask = [1] * tokens + [0] * tool_tokens
    turns = [Turn(text, "")]
    return Completion(EXAMPLE, text, [1], [7] * len(mask), [0.0] * len(mask), mask, finish, turns, budget)


def test_length_target_is_minus_the_distance_to_the_target():
    fn = REWARDS.bind("length_target")
    assert fn(completion(7, True), EXAMPLE) == -3.0
    assert fn(completion(13, False), EXAMPLE) == -3.0
    assert fn(completion(10, True, tool_tokens=5), EXAMPLE) == 0.0  # tool output is not the model's length
    assert REWARDS.bind("length_target", {"target": 4})(completion(7, True), EXAMPLE) == -3.0


def test_length_target_without_a_target_names_the_sample():
    no_target = Example(id="bare-1", prompt=[], answer="4")
    item = Completion(no_target, "\\boxed{4}", [1], [7], [0.0], [1], "stop", budget=20)
    with pytest.raises(RewardError, match=r"reward 'length_target' raised ValueError: .*target_tokens.*'bare-1'"):
        score([item], None, [("length_target", 0.0003)])


def test_l1_max_hand_computed():
    fn = GROUP_REWARDS.bind("length_target_max", {"alpha": 0.1, "delta": 0.5})
    group = [completion(7, True), completion(10, True), completion(16, True), completion(2, False)]
    # room = 10 - n: 3 -> 0.8; 0 -> 0.5; -6 -> clip(-0.1) = 0; wrong -> 0
    assert fn(group, [1.0, 1.0, 1.0, 0.0]) == pytest.approx([0.8, 0.5, 0.0, 0.0])
    assert fn([completion(0, True)], [1.0]) == [1.0]  # 0.5 + 1.0 clipped at 1


def test_cosine_length_hand_computed():
    fn = GROUP_REWARDS.bind("cosine_length")
    group = [completion(0, True), completion(10, True), completion(20, True), completion(10, False),
             completion(5, False), completion(20, True, finish="length")]  # fmt: skip
    values = fn(group, [1.0, 1.0, 1.0, 0.0, 0.0, 1.0])
    # T = 20: t=0 -> r_0; t=T/2 -> (r_0 + r_T) / 2; t=T -> r_T; t=5: r_T + (r_0 - r_T)(1 + cos(pi/4))/2
    wrong5 = 0.0 + (-10.0) * (1 + math.cos(math.pi / 4)) / 2
    assert values == pytest.approx([2.0, 1.5, 1.0, -5.0, wrong5, -10.0])


def test_kimi_length_hand_computed():
    fn = GROUP_REWARDS.bind("kimi_length")
    group = [completion(4, True), completion(8, True), completion(12, False), completion(4, False)]
    # min 4, max 12: lambda = 0.5 - (len - 4) / 8 = 0.5, 0, -0.5, 0.5; wrong: min(0, lambda)
    assert fn(group, [1.0, 1.0, 0.0, 0.0]) == pytest.approx([0.5, 0.0, -0.5, 0.0])
    assert fn([completion(5, True), completion(5, False)], [1.0, 0.0]) == [0.0, 0.0]


def test_group_length_rewards_compose_with_the_mix():
    group = [completion(4, True), completion(12, True)]
    totals, parts = score(group, None, [("math", 1.0), ("kimi_length", 0.1)], verifier="math", group_size=2)
    assert parts["kimi_length"] == [0.5, -0.5]
    assert totals == pytest.approx([1.05, 0.95])


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("reward", [0.5, 0.5, 0.0, 0.0]), ("penalty", [0.0, 0.0, -0.5, 0.0]), ("hybrid", [0.5, 0.5, -0.5, 0.0])],
)
def test_laser_step_reward_hand_computed(mode, expected):
    fn = GROUP_REWARDS.bind("laser", {"target": 10, "mode": mode})
    group = [completion(5, True), completion(10, True), completion(11, True), completion(3, False)]
    assert fn(group, [1.0, 1.0, 1.0, 0.0]) == expected


def test_laser_d_picks_the_target_of_the_groups_difficulty():
    fn = GROUP_REWARDS.bind("laser", {"target": 16, "target_easy": 4, "target_medium": 8})
    easy = [completion(6, True), completion(3, True), completion(6, True)]  # accuracy 1: target 4
    assert fn(easy, [1.0, 1.0, 1.0]) == [0.0, 0.5, 0.0]
    medium = [completion(6, True), completion(6, False), completion(9, True)]  # 2/3: easy bucket (>= 2/3)
    assert fn(medium, [1.0, 0.0, 1.0]) == [0.0, 0.0, 0.0]
    middle = [completion(6, True), completion(6, False), completion(9, False)]  # 1/3: medium, target 8
    assert fn(middle, [1.0, 0.0, 0.0]) == [0.5, 0.0, 0.0]
    hard = [completion(12, True), completion(6, False), completion(9, False), completion(2, False)]  # 1/4: 16
    assert fn(hard, [1.0, 0.0, 0.0, 0.0]) == [0.5, 0.0, 0.0, 0.0]


def test_a_group_length_reward_runs_in_training(tiny_config, tmp_path):
    import json

    from rlvr.trainer import train

    config = tiny_config(
        "rewards=[{name: starts_with_a_or_e, weight: 1.0}, {name: kimi_length, weight: 0.1}]",
        "rollout.max_new_tokens=6", "train.steps=2", "checkpoint.export_final=false",
    )  # fmt: skip
    rows = [json.loads(line) for line in (train(config, tmp_path / "run") / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "train/reward" in r]
    assert len(steps) == 2 and all("train/reward/kimi_length" in r for r in steps)
    assert all(-0.5 <= r["train/reward/kimi_length"] <= 0.5 for r in steps)
