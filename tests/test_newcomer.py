"""What a newcomer tripped over in the first hour on a fresh clone, each made to work."""

import json
import os
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from rlvr.cli import main
from rlvr.config import load_config
from rlvr.errors import ModelError
from rlvr.models import load_model
from rlvr.tasks import make_task
from rlvr.trainer import train

ROOT = Path(__file__).resolve().parent.parent
TINY_EVAL = ["model.name=tiny-random", "eval.size=4", "rollout.max_new_tokens=4", "eval.batch_size=8"]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_new_task_name_starts_from_that_tasks_defaults():
    config = load_config(None, ["task.name=countdown"])  # grpo's task keys (digits, operands, ...) are arithmetic's
    assert config.task.name == "countdown" and config.task.params() == {}
    late = load_config(None, ["task.seed=3", "task.name=countdown"])  # in either order
    assert late.task.params() == {"seed": 3}
    tir = load_config("tir", ["task.name=countdown", "rewards=[{name: countdown, weight: 1.0}]"])  # its header
    assert make_task(tir.task.name, **tir.task.params()).split("eval")


def test_the_readme_eval_with_a_task_name_runs(capsys, tmp_path):
    out = tmp_path / "eval.json"
    code, _, err = run(capsys, "eval", "--model", "tiny-random", "task.name=countdown", *TINY_EVAL[1:],
                       "--out", str(out))  # fmt: skip
    assert code == 0, err
    assert json.loads(out.read_text())["task"] == "countdown"


def test_eval_of_a_run_uses_the_runs_own_config(capsys, tiny_config, tmp_path):
    config = tiny_config("task.name=countdown", "train.steps=1", "rewards=[{name: countdown, weight: 1.0}]",
                         "eval.verifier=null")  # fmt: skip
    run_dir = train(config, tmp_path / "run")
    out = tmp_path / "eval.json"
    code, _, err = run(capsys, "eval", "--model", str(run_dir), "eval.size=3", "--out", str(out))
    assert code == 0, err
    metrics = json.loads(out.read_text())
    assert (metrics["task"], metrics["model"], metrics["eval/problems"]) == ("countdown", str(run_dir / "final"), 3.0)


def test_eval_model_name_override_evaluates_that_model(capsys, tmp_path):
    out = tmp_path / "eval.json"
    code, _, err = run(capsys, "eval", *TINY_EVAL, "--out", str(out))
    assert code == 0, err
    assert json.loads(out.read_text())["model"] == "tiny-random"


def test_a_failed_start_leaves_no_run_directory(tiny_config, tmp_path):
    with pytest.raises(ModelError):
        train(tiny_config("model.name=./no/such/model"), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_exports_and_checkpoints_are_readable_by_others_and_every_eval_completion_is_kept(tiny_config, tmp_path):
    old = os.umask(0o022)
    try:
        run_dir = train(tiny_config("train.steps=1", "eval.before=true"), tmp_path / "run")
    finally:
        os.umask(old)
    for folder in (run_dir / "final", *(run_dir / "checkpoints").iterdir()):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o755, folder
        for file in folder.iterdir():
            assert stat.S_IMODE(file.stat().st_mode) == 0o644, file
    rows = [json.loads(line) for line in (run_dir / "eval_samples.jsonl").read_text().splitlines()]
    assert [sum(r["step"] == s for r in rows) for s in (0, 1)] == [8, 8]  # eval.size=8, every completion


def test_help_names_run_dir_and_a_flag_gets_a_hint(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "run_dir=" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--steps", "3"])
    assert exit_info.value.code == 2
    assert "did you mean train.steps=3?" in capsys.readouterr().err
    assert "run_dir=" in (ROOT / "README.md").read_text()


def test_a_hub_id_not_in_the_cache_fails_fast(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    started = time.monotonic()
    with pytest.raises(ModelError, match=r"not in the local Hugging Face cache"):
        load_model("someone/not-a-cached-model")
    assert time.monotonic() - started < 10


@pytest.mark.skipif(not (ROOT / "pyproject.toml").is_file(), reason="needs the source tree")
def test_a_built_wheel_carries_the_recipes(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), ROOT],
        check=True, capture_output=True, cwd=tmp_path,
    )  # fmt: skip
    wheel = next(tmp_path.glob("rlvr-*.whl"))
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    assert (site / "rlvr" / "recipes" / "grpo.yaml").is_file()
    env = {**os.environ, "PYTHONPATH": str(site)}
    script = "import rlvr, sys; from rlvr.cli import main; print(rlvr.__file__); sys.exit(main(['recipes']))"
    listing = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    first, *recipes = listing.stdout.splitlines()
    assert first.startswith(str(site))  # the wheel's copy, not the source tree's
    assert {line.split()[0] for line in recipes} >= {"grpo", "dapo", "tir", "search", "ppo"}
