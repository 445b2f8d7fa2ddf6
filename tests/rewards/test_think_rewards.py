"""Think-mode rewards (rlvr.rewards.think), ConciseR's length reward and the think advantages,
against hand-computed values."""

import math

import pytest
import torch

from rlvr.algos.advantages import ADVANTAGES
from rlvr.rewards import GROUP_REWARDS, REWARDS
from rlvr.types import Completion, Example

EXAMPLE = Example(id="q", prompt=[], answer="4")


def completion(text: str = "x", tokens: int = 5, budget: int | None = 20, think_budget: int | None = None):
    return Completion(EXAMPLE, text, [1], [7] * tokens, [0.0] * tokens, [1] * tokens, "stop", budget=budget,
                      think_budget=think_budget)  # fmt: skip


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a b</think>The answer is \\boxed{4}", 1.0),
        ("<think>a b</think>\\boxed{4}", 1.0),
        ("</think>\\boxed{4}", 1.0),  # no-think is well formed
        ("a b \\boxed{4}", 0.0),  # no close marker
        ("a</think>b</think>\\boxed{4}", 0.0),  # two
        ("a</think>\\boxed{ }", 0.0),  # empty answer
        ("a</think>4", 0.0),  # not boxed
        ("y<think>a</think>\\boxed{4}", 0.0),  # text before the open marker
        ("\\boxed{4}</think>", 0.0),  # the answer inside the thinking
    ],
)
def test_think_format(text, expected):
    assert REWARDS.bind("think_format")(completion(text), EXAMPLE) == expected


def test_hbpo_budget_hand_computed():
    fn = GROUP_REWARDS.bind("hbpo_budget", {"max_tokens": 100, "alpha": 0.01})
    group = [completion(tokens=30, think_budget=50), completion(tokens=70, think_budget=50),
             completion(tokens=30, think_budget=50), completion(tokens=120, think_budget=100)]  # fmt: skip
    # n <= b: 4 cos(pi 50 / 200) = 2.828427; n > b: 4 cos(pi 70 / 200) - 0.01 x 20 = 1.815962 - 0.2; wrong: 0;
    # over L_max: 0
    assert fn(group, [1.0, 1.0, 0.0, 1.0]) == pytest.approx([2.828427, 1.615962, 0.0, 0.0], abs=1e-6)
    default = GROUP_REWARDS.bind("hbpo_budget", {"max_tokens": 100})  # alpha = 1 / L_max
    assert default([completion(tokens=70, think_budget=50)], [1.0]) == pytest.approx([1.815962 - 0.2], abs=1e-6)
    with pytest.raises(ValueError, match="set think.budgets"):
        default([completion(tokens=70)], [1.0])


def test_hbpo_advantage_hand_computed():
    fn = ADVANTAGES.bind("hbpo", {"budgets": [50, 100], "max_tokens": 100})
    advantages, metrics = fn(torch.tensor([[1.0, 3.0, 0.0, 2.0]]))
    # intra: subgroup means (2, 1) minus ceilings (4 cos(pi/4) = 2.828427, 4 cos(pi/2) = 0) = (-0.828427, 1.0);
    # inter: (r - 1.5) / sqrt(5/3) = (-0.387298, 1.161895, -1.161895, 0.387298)
    expected = [-0.828427 - 0.387298, -0.828427 + 1.161895, 1.0 - 1.161895, 1.0 + 0.387298]
    assert advantages[0].tolist() == pytest.approx(expected, abs=1e-5)
    assert metrics["adv/hbpo_intra"] == pytest.approx((-0.828427 + 1.0) / 2, abs=1e-5)
    with pytest.raises(ValueError, match="split each group"):
        ADVANTAGES.bind("hbpo", {"budgets": [50, 100, 200], "max_tokens": 100})(torch.zeros(1, 4))


def test_decaying_exit_hand_computed():
    fn = GROUP_REWARDS.bind("decaying_exit")
    group = [completion(think_budget=3), completion(think_budget=1), completion(think_budget=2),
             completion(think_budget=5)]  # fmt: skip
    # by exit position: b1 wrong -> 0; b2 right, first -> 1; b3 right, second -> 1/2; b5 right, third -> 1/4
    assert fn(group, [1.0, 0.0, 1.0, 1.0]) == [0.5, 0.0, 1.0, 0.25]
    tied = [completion(think_budget=4), completion(think_budget=4)]  # the path (last) after an exit at its end
    assert fn(tied, [1.0, 1.0]) == [1.0, 0.5]
    with pytest.raises(ValueError, match="set think.early_exits"):
        fn([completion(), completion()], [1.0, 1.0])


def test_adapt_think_hand_computed():
    fn = GROUP_REWARDS.bind("adapt_think", {"delta": 0.05})
    texts = ["</think>\\boxed{4}", "</think>\\boxed{5}", "ab</think>\\boxed{4}", "ab</think>\\boxed{5}"]
    # R_ref = mean correctness of the thinking rows = 0.5
    assert fn([completion(t) for t in texts], [1.0, 0.0, 1.0, 0.0]) == pytest.approx([0.55, -0.45, 0.5, -0.5])
    # a thinking row that closes after a newline is thinking (the first text decides, as y_1 in the paper)
    assert fn([completion("</think>\\boxed{4}"), completion("\n</think>\\boxed{5}")], [1.0, 0.0]) == pytest.approx(
        [1.05, 0.0]
    )
    # thinking written after an early close marker and closed again is thinking: no bonus, and it is one of
    # the thinking rows R_ref averages (R_ref = (1 + 1) / 2 here)
    implicit = "</think>7 + 7 = 14.</think>\\boxed{14}"
    assert fn([completion("</think>\\boxed{4}"), completion(implicit), completion("ab</think>\\boxed{4}")],
              [0.0, 1.0, 1.0]) == pytest.approx([-0.95, 0.0, 0.0])  # fmt: skip
    # no thinking row at all: R_ref falls back to the group's mean correctness (0.5)
    assert fn([completion("</think>\\boxed{4}"), completion("</think>\\boxed{5}")], [1.0, 0.0]) == pytest.approx(
        [0.55, -0.45]
    )


def test_adapt_think_with_a_length_cap_counts_worked_steps_after_the_marker_as_thinking():
    fn = GROUP_REWARDS.bind("adapt_think", {"delta": 0.2, "no_think_max_chars": 12})
    direct = "</think>\n\\boxed{21}\n"  # "\boxed{21}": 10 characters once stripped, within the cap
    worked = "</think>\n7 + 7 = 14. 14 + 7 = 21. \\boxed{21}"  # 36 characters: implicit thinking
    thought = "\n7 + 7 = 14.\n</think>\\boxed{20}"
    # thinking rows: worked (right) and thought (wrong): R_ref = 0.5; only the direct answer earns the bonus
    assert fn([completion(direct), completion(worked), completion(thought)], [1.0, 1.0, 0.0]) == pytest.approx(
        [1.2 - 0.5, 0.5, -0.5]
    )
    plain = GROUP_REWARDS.bind("adapt_think", {"delta": 0.2})  # the paper's rule: both skip, R_ref = 0
    assert plain([completion(direct), completion(worked), completion(thought)], [1.0, 1.0, 0.0]) == pytest.approx(
        [1.2, 1.2, 0.0]
    )


def test_concise_only_rewards_groups_that_are_all_correct():
    fn = GROUP_REWARDS.bind("concise")
    group = [completion(tokens=10), completion(tokens=5)]
    assert fn(group, [1.0, 1.0]) == pytest.approx([0.5, 0.75])  # (20 - L) / 20
    assert fn(group, [1.0, 0.0]) == [0.0, 0.0]
    assert GROUP_REWARDS.bind("concise", {"max_tokens": 10})(group, [1.0, 1.0]) == pytest.approx([0.0, 0.5])


def test_identity_advantage_is_the_reward():
    rewards = torch.tensor([[0.55, -0.45, 0.5, -0.5]])
    advantages, _ = ADVANTAGES.bind("identity")(rewards)
    assert torch.equal(advantages, rewards)
    assert math.isclose(float(advantages.sum()), 0.1, abs_tol=1e-6)  # not centred: the no-think bonus stays
