"""``rlvr sweep`` runs recipes with the same budget and writes one table."""

import json

from rlvr.cli import main
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
