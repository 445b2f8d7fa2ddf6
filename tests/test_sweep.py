"""``rlvr sweep`` runs recipes with the same budget and writes one table."""

import json

import pytest

from rlvr.cli import main
from rlvr.sweep import mean_std
from tests.conftest import TINY_OVERRIDES


def test_sweep_writes_one_table_for_all_recipes(tmp_path, capsys):
    out = tmp_path / "sweep"
    overrides = [*TINY_OVERRIDES, "eval.before=true", "train.steps=2", "checkpoint.export_final=false"]
    assert main(["sweep", "grpo", "rloo", "ppo", *overrides, "--out", str(out)]) == 0
    table = (out / "sweep.md").read_text()
    assert table.count("\n| grpo |") == 1 and "| rloo |" in table and "| ppo |" in table
    results = json.loads((out / "sweep.json").read_text())["results"]
    assert [r["recipe"] for r in results] == ["grpo", "rloo", "ppo"]
    assert all(r["steps"] == 2 and r["eval_after"] is not None for r in results)
    assert len({r["eval_before"] for r in results}) == 1  # measured once, by the first run
    before_rows = [line for line in (out / "rloo" / "metrics.jsonl").read_text().splitlines() if '"step": 0' in line]
    assert before_rows == []  # later recipes skip the identical "before" eval
    assert "| grpo |" in capsys.readouterr().out


def test_sweep_refuses_a_typo_before_training(tmp_path, capsys):
    assert main(["sweep", "grpo", "grpp", "--out", str(tmp_path / "s")]) == 2
    assert "unknown recipe 'grpp'" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_sweep_over_seeds_reports_mean_and_spread(tmp_path, capsys):
    out = tmp_path / "seeds"
    overrides = [*TINY_OVERRIDES, "train.steps=1", "checkpoint.export_final=false"]
    assert main(["sweep", "grpo", "--out", str(out), "--seeds", "0", "1", *overrides]) == 0  # overrides after --seeds
    record = json.loads((out / "sweep.json").read_text())
    assert [(r["recipe"], r["seed"]) for r in record["results"]] == [("grpo", 0), ("grpo", 1)]
    assert (out / "grpo" / "seed1" / "metrics.jsonl").is_file()
    after = [r["eval_after"] for r in record["results"]]
    mean, std = record["summary"][0]["eval_after"]
    assert mean == pytest.approx(sum(after) / 2) and std == pytest.approx(abs(after[0] - after[1]) / 2**0.5)
    table = (out / "sweep.md").read_text()
    assert "| grpo (seed 0) |" in table and "| grpo (seeds 0, 1) |" in table and " ± " in table


def test_sweep_seeds_must_be_distinct_integers(tmp_path, capsys):
    assert main(["sweep", "grpo", "--seeds", "0", "0", "--out", str(tmp_path / "s")]) == 2
    assert "--seeds needs distinct integers" in capsys.readouterr().err
    assert main(["sweep", "grpo", "--seeds", "x", "--out", str(tmp_path / "s")]) == 2
    assert "--seeds takes integers" in capsys.readouterr().err


def test_mean_std_by_hand():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert mean_std([0.5]) == (0.5, 0.0)
