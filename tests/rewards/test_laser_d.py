"""LASER-D's adaptive targets (rlvr.rewards.laser_d) against hand-computed cases, and in a run."""

import json

import torch

from rlvr.rewards import GROUP_REWARDS, RewardTerm
from rlvr.rewards.laser_d import LaserDMonitor, band_of, choose_targets
from rlvr.trainer import train
from rlvr.types import Completion, Example

EXAMPLE = Example(id="q", prompt=[], answer="4")


def completion(tokens: int) -> Completion:
    return Completion(EXAMPLE, "x", [1], [7] * tokens, [0.0] * tokens, [1] * tokens, "stop", budget=64)


def test_bands_follow_the_group_accuracy():
    assert [band_of(a) for a in (1.0, 2 / 3, 0.5, 1 / 3, 0.2, 0.0)] == ["easy", "easy", "medium", "medium", "hard",
                                                                       "hard"]  # fmt: skip


def test_choose_targets_hand_computed():
    seen = [10, 20, 30, 40]
    targets = choose_targets({"easy": seen, "medium": seen, "hard": seen}, 8, [16, 32, 48])
    # easy, C = floor(16/3) = 5: L=16 covers 1/4, floor(1.25) = 1 >= 1 -> 16
    # medium, C = floor(8/3) = 2: L=16 -> floor(0.5) = 0; L=32 covers 3/4 -> floor(1.5) = 1 -> 32
    # hard, C = 1: needs all covered -> 48
    assert targets == {"easy": 16, "medium": 32, "hard": 48}
    assert choose_targets({"hard": [60, 70], "easy": []}, 8, [16, 32, 48]) == {"hard": 70}  # none fits: the longest


def test_laser_d_is_laser_at_the_given_targets():
    fn = GROUP_REWARDS.bind("laser_d", {"upper": 64, "targets": {"easy": 8}})
    group = [completion(5), completion(12), completion(5)]
    assert fn(group, [1.0, 1.0, 1.0]) == [0.5, 0.0, 0.5]  # easy group: target 8
    assert GROUP_REWARDS.bind("laser_d", {"upper": 64})(group, [1.0, 1.0, 1.0]) == [0.5, 0.5, 0.5]  # no target yet


def test_monitor_rechooses_every_few_steps_and_restores():
    monitor = LaserDMonitor({"upper": 48, "lower": 16, "stride": 16, "every": 2}, group_size=2)
    assert monitor.candidates == [16, 32, 48]
    sampled = [completion(10), completion(20), completion(40), completion(50)]  # easy group, then hard
    metrics = monitor.observe(sampled, [1.0, 1.0, 0.0, 0.0])
    assert metrics["laser_d/target_easy"] == 48.0  # not re-chosen yet
    saved = monitor.state_dict()
    metrics = monitor.observe(sampled, [1.0, 1.0, 0.0, 0.0])
    # easy, C = floor(4/3) = 1, lengths 10, 20, 10, 20: L=16 covers half -> floor(0.5) = 0; L=32 -> 32
    # hard, C = 1, lengths 40, 50, 40, 50: no candidate covers all -> the longest, 50
    assert metrics == {"laser_d/target_easy": 32.0, "laser_d/target_medium": 48.0, "laser_d/target_hard": 50.0}
    term = monitor.terms([RewardTerm("laser_d", 1.0, None, "group")])[0]
    assert term.fn([completion(30), completion(40)], [1.0, 1.0]) == [0.5, 0.0]
    other = LaserDMonitor({"upper": 48, "every": 2}, group_size=2)
    other.load_state_dict(saved)
    assert other.observe(sampled, [1.0, 1.0, 0.0, 0.0]) == metrics  # a resumed monitor continues exactly


def test_a_run_logs_the_targets_and_resumes_them(tiny_config, tmp_path):
    overrides = ["rewards=[{name: starts_with_a_or_e}, {name: laser_d, upper: 4, lower: 1, stride: 1, every: 3}]",
                 "checkpoint.every=2", "checkpoint.export_final=false"]  # fmt: skip
    whole = train(tiny_config(*overrides, "train.steps=4"), tmp_path / "whole")
    torch.manual_seed(0)
    train(tiny_config(*overrides, "train.steps=2"), tmp_path / "split")
    train(tiny_config(*overrides, "train.steps=4"), tmp_path / "split", resume=True)
    logged = []
    for run in (whole, tmp_path / "split"):
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        steps = [r for r in rows if "laser_d/target_easy" in r]
        logged.append([{k: v for k, v in r.items() if k.startswith("laser_d/")} for r in steps])
    assert [r["laser_d/target_hard"] for r in logged[0]] == [4.0, 4.0, 2.0, 2.0]  # re-chosen after step 3
    assert logged[0] == logged[1]  # the resumed run kept the window of steps 1-2 (a fresh one would say 4 at 3)
