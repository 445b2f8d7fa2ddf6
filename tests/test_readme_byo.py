"""The README's "Coming from TRL or verl" snippets, run as written on files in their formats."""

import json
import re
from pathlib import Path

import pytest

from rlvr.cli import main
from rlvr.metrics import read_metrics
from tests.conftest import TINY_OVERRIDES

datasets = pytest.importorskip("datasets")

README = Path(__file__).resolve().parent.parent / "README.md"


def snippets() -> dict[str, str]:
    """The section's code blocks by the file name in their first comment line."""
    text = README.read_text()
    section = text[text.index("## Coming from TRL or verl") :]
    section = section[: section.index("\n## ", 10)]
    blocks = re.findall(r"```(?:python|yaml)\n(.*?)```", section, re.DOTALL)
    return {re.match(r"# (\S+?):", block).group(1): block for block in blocks}


def overrides() -> list[str]:
    keep = [o for o in TINY_OVERRIDES if not o.startswith(("rewards=", "eval.verifier="))]
    return [*keep, "train.steps=2", "checkpoint.export_final=false", "rollout.max_new_tokens=4"]


def test_the_readme_has_both_users(tmp_path):
    assert set(snippets()) == {"my_rewards.py", "trl_user.yaml", "my_score.py", "verl_user.yaml"}


def test_a_trl_user_runs_the_readme_recipe(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for name in ("my_rewards.py", "trl_user.yaml"):
        (tmp_path / name).write_text(snippets()[name])
    rows = [{"prompt": [{"role": "user", "content": f"What is {i} + 1?"}], "solution": str(i + 1)} for i in range(50)]
    (tmp_path / "my_data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["train", "trl_user.yaml", *overrides(), "run_dir=run"]) == 0, capsys.readouterr().err
    metrics = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert all("train/reward/my_rewards.py:accuracy_reward" in r for r in metrics if "train/reward" in r)
    assert any("eval/accuracy" in r for r in metrics)


def test_a_verl_user_runs_the_readme_recipe(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for name in ("my_score.py", "verl_user.yaml"):
        (tmp_path / name).write_text(snippets()[name])

    def rows(start, n):
        return [
            {
                "data_source": "openai/gsm8k",
                "prompt": [{"role": "user", "content": f"Question {i}: what is {i} + 1?"}],
                "ability": "math",
                "reward_model": {"style": "rule", "ground_truth": str(i + 1)},
                "extra_info": {"split": "train", "index": i},
            }
            for i in range(start, start + n)
        ]

    datasets.Dataset.from_list(rows(0, 40)).to_parquet(str(tmp_path / "train.parquet"))
    datasets.Dataset.from_list(rows(40, 4)).to_parquet(str(tmp_path / "test.parquet"))
    assert main(["train", "verl_user.yaml", *overrides(), "run_dir=run"]) == 0, capsys.readouterr().err
    metrics = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert all("train/reward/my_score.py:compute_score" in r for r in metrics if "train/reward" in r)
    assert [r["eval/problems"] for r in metrics if "eval/problems" in r] == [4.0]
