"""ReMix replay and Scaf-GRPO hints on hand-made groups; every part end to end with exact resume."""

from types import SimpleNamespace

import pytest
import torch

from rlvr.config import load_config
from rlvr.errors import ConfigError
from rlvr.metrics import read_metrics
from rlvr.samplers.hints import HintScaffold, hinted
from rlvr.samplers.replay import ReplayBuffer
from rlvr.tasks.arithmetic import hints as arithmetic_hints
from rlvr.tasks.countdown import hints as countdown_hints
from rlvr.trainer import train
from rlvr.types import Completion, Example

EXAMPLE = Example("x", [{"role": "user", "content": "What is 3 + 5 * 2?"}], "13", {"hints": ["rule", "plan", "steps"]})


def rollout(text: str, version: int = 0, example: Example = EXAMPLE) -> Completion:
    return Completion(example, text, [1], [5], [-0.5], [1], "stop", policy_version=version)


def fresh_batch(rewards: list[list[float]], version: int):
    kept = [rollout(f"{version}-{i}-{j}", version) for i, g in enumerate(rewards) for j, _ in enumerate(g)]
    flat = [r for g in rewards for r in g]
    return SimpleNamespace(kept=kept, rewards=torch.tensor(flat), sizes=[len(g) for g in rewards])


def test_replay_stores_disagreeing_groups_and_replays_them_next_step():
    buffer = ReplayBuffer(groups=2, capacity=8, reuse=1, max_staleness=2, until_step=None)
    first = fresh_batch([[1.0, 0.0], [1.0, 1.0]], version=0)
    assert buffer.mix(first, step=1)["replay/groups"] == 0.0  # nothing older yet
    assert len(buffer.stored) == 1  # the agreeing group is not worth keeping
    second = fresh_batch([[0.0, 1.0]], version=1)
    metrics = buffer.mix(second, step=2)
    assert metrics["replay/groups"] == 1.0 and metrics["replay/staleness_mean"] == 1.0
    assert second.sizes == [2, 2] and second.rewards.tolist() == [0.0, 1.0, 1.0, 0.0]
    assert [c.text for c in second.kept[2:]] == ["0-0-0", "0-0-1"]  # the step-1 group, as sampled
    third = fresh_batch([[0.0, 0.5]], version=2)
    assert buffer.mix(third, step=3)["replay/groups"] == 1.0  # step 2's group; step 1's was used (reuse=1)
    assert [c.text for c in third.kept[2:]] == ["1-0-0", "1-0-1"]


def test_replay_staleness_bound_capacity_and_reincarnation():
    buffer = ReplayBuffer(groups=4, capacity=2, reuse=5, max_staleness=1, until_step=3)
    for step in (1, 2, 3):
        buffer.mix(fresh_batch([[1.0, 0.0]], version=step - 1), step=step)
    assert len(buffer.stored) == 2
    late = fresh_batch([[1.0, 0.0]], version=3)
    assert buffer.mix(late, step=4)["replay/groups"] == 0.0  # after until_step: on-policy again
    fresh = ReplayBuffer(groups=4, capacity=2, reuse=5, max_staleness=1, until_step=None)
    fresh.load_state_dict(buffer.state_dict())
    batch = fresh_batch([[1.0, 0.0]], version=4)
    assert fresh.mix(batch, step=5)["replay/groups"] == 1.0  # only step 4's group is within 1 step


def test_hinted_prompt_and_the_tiers_tasks_supply():
    tier2 = hinted(EXAMPLE, 2, "\n\nHint: ")
    assert tier2.prompt[-1]["content"] == "What is 3 + 5 * 2?\n\nHint: plan" and tier2.id == "x"
    assert EXAMPLE.prompt[-1]["content"] == "What is 3 + 5 * 2?"  # the original is untouched
    assert hinted(EXAMPLE, 4, "") is None
    assert arithmetic_hints((3, 5, 2), ("+", "*")) == [
        "Multiplication comes before addition and subtraction; do one operation at a time.",
        "Work out 5 * 2 first, then the rest from left to right.",
        "5 * 2 = 10; now 3 + 10.",
    ]
    assert arithmetic_hints((47, 38), ("+",))[1:] == ["Write 47 + 38 as 47 + 30 + 8.", "47 + 30 = 77; now 77 + 8."]
    assert countdown_hints("((3 + 5) * 2)")[2] == "One solution starts with 3 + 5 = 8."


def test_scaffold_tries_tiers_until_one_solves_and_replaces_failed_rollouts():
    scaffold = HintScaffold(after=1, start=0, samples=2, prefix=" Hint: ")
    group = [rollout("wrong") for _ in range(4)]
    asked = []

    def sample(examples, n):
        asked.append([e.prompt[-1]["content"].split("Hint: ")[-1] for e in examples])
        level = examples[0].prompt[-1]["content"].endswith("steps")
        return [[rollout("13" if level else "12", example=e) for _ in range(n)] for e in examples]

    groups, metrics = scaffold.scaffold([group], [[False] * 4], 1, sample, lambda g: [c.text == "13" for c in g])
    assert asked == [["rule"], ["plan"], ["steps"]]  # abstract to concrete
    assert [c.text for c in groups[0]] == ["13", "wrong", "wrong", "wrong"]  # one right one replaces one failed
    assert [c.hint_level for c in groups[0]] == [3, 0, 0, 0]
    assert metrics == {"hints/groups": 1.0, "hints/solved": 1.0, "hints/rollouts": 6.0, "hints/level_mean": 3.0}


def test_scaffold_waits_for_the_exemption_and_repeated_failure():
    scaffold = HintScaffold(after=2, start=1, samples=1, prefix=" ")
    groups = [[rollout("wrong")] * 2]
    assert scaffold.stuck(groups, [[False, False]], step=1) == []  # exemption period
    assert scaffold.stuck(groups, [[False, False]], step=2) == [0]  # second all-wrong group in a row
    assert scaffold.stuck(groups, [[True, False]], step=3) == []
    assert scaffold.failures == {"x": 0}
    lone = [[rollout("wrong"), Completion(EXAMPLE, "demo", [1], [5], [0.0], [1], "stop", origin="demo")]]
    assert scaffold.stuck(lone, [[False, False]], step=3) == []  # failure 1 of 2
    assert scaffold.stuck(lone, [[False, False]], step=4) == []  # one own rollout: nothing left unhinted


def test_config_refuses_what_cannot_work():
    with pytest.raises(ConfigError, match="algo.advantage=pass_k does not take; use one of: dr_grpo, grpo"):
        load_config(None, ["rollout.allocation=xrpo", "algo.advantage=pass_k", "rewards=[{name: math}]"])
    with pytest.raises(ConfigError, match="hints.enabled needs think.enabled=false"):
        load_config("hbpo", ["hints.enabled=true"])
    with pytest.raises(ConfigError, match="laser_d reward's monitor reads equal groups"):
        load_config("cot", ["rewards=[{name: math}, {name: laser_d}]", "rollout.allocation=xrpo"])
    with pytest.raises(ConfigError, match="rollout.allocation.initial=9 exceeds rollout.group_size=8"):
        load_config(None, ["rollout.allocation={name: xrpo, initial: 9}"])
    with pytest.raises(ConfigError, match="unknown sampler 'mops'.*Did you mean mopps"):
        load_config(None, ["sampler=mops"])


EVERYTHING = (
    "sampler=mopps", "rollout.allocation={name: xrpo, initial: 3}", "replay.groups=2", "hints.enabled=true",
    "train.steps=4", "checkpoint.every=2", "checkpoint.export_final=false",
)  # fmt: skip


def test_every_part_together_resumes_exactly(tiny_config, tmp_path):
    straight = train(tiny_config(*EVERYTHING), tmp_path / "straight")
    interrupted = train(tiny_config(*EVERYTHING), tmp_path / "resumed", stop_after=2)
    resumed = train(tiny_config(*EVERYTHING), interrupted, resume=True)
    a, b = read_metrics(straight / "metrics.jsonl"), read_metrics(resumed / "metrics.jsonl")
    rows = [r for r in a if "train/reward" in r]
    assert any(r["replay/groups"] > 0 for r in rows)  # replay ran
    assert any(r["sampling/group_size_max"] > r["sampling/group_size_min"] for r in rows)  # ragged groups ran
    assert all(r["sampling/rollouts"] >= 32 for r in rows)
    for row_a, row_b in zip(a, b, strict=True):
        for key in row_a:
            if not key.startswith(("time/", "throughput/")):
                assert row_a[key] == pytest.approx(row_b[key], rel=1e-4, abs=1e-6), key


@pytest.mark.parametrize(
    "parts",
    [("sampler=pass_rate", "replay.groups=2"), ("sampler=category_bandit", "rollout.allocation=xrpo"),
     ("sampler=mopps", "rollout.allocation=xrpo", "replay.groups=2", "hints.enabled=true")],
    ids=["pass_rate+replay", "bandit+xrpo", "mopps+xrpo+replay+hints"],
)  # fmt: skip
def test_the_parts_still_learn(tiny_config, tmp_path, parts):
    """Mean reward rises from below 0.25 to above 0.8 within 40 steps, as plain GRPO's does (tests/test_trainer.py)."""
    mixture = "[{name: arithmetic, difficulty: a}, {name: arithmetic, digits: 2, difficulty: b}]"
    bandit = [f"task={{name: mixture, parts: {mixture}}}"]
    extra = bandit if "sampler=category_bandit" in parts else []
    run_dir = train(tiny_config("train.steps=40", "checkpoint.export_final=false", *parts, *extra), tmp_path / "run")
    rewards = [r["train/reward"] for r in read_metrics(run_dir / "metrics.jsonl") if "train/reward" in r]
    assert sum(rewards[:3]) / 3 < 0.25
    assert sum(rewards[-3:]) / 3 > 0.8
