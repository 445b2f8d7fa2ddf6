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


# ---------------------------------------------------------------- found in review


def test_model_name_override_keeps_the_model_section():
    config = load_config(None, ["model.lora_rank=8", "model.name=tiny-random", "model.dtype=bfloat16"])
    assert (config.model.name, config.model.lora_rank, config.model.dtype) == ("tiny-random", 8, "bfloat16")


def test_a_component_written_without_its_name_is_its_default_one(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("algo:\n  policy_loss: {clip_high: 0.28}\ntask: {digits: 2}\n")
    assert load_config(str(recipe)).algo.policy_loss.params() == {"clip_low": 0.2, "clip_high": 0.28}
    renamed = load_config(str(recipe), ["algo.policy_loss.name=gspo", "task.name=countdown"])
    assert renamed.algo.policy_loss.params() == {"clip_low": 3e-4, "clip_high": 4e-4}
    assert renamed.task.params() == {}
    kept = load_config(None, ["algo.policy_loss.clip_high=0.3", "algo.policy_loss=ppo_clip"])
    assert kept.algo.policy_loss.params()["clip_high"] == 0.3


def test_infinite_hyper_parameters_survive_the_saved_config():
    import yaml

    from rlvr.config import to_yaml, validate

    config = load_config(None, ["algo.policy_loss.clip_high=.inf"])
    again = validate(yaml.safe_load(to_yaml(config)))
    assert again.algo.policy_loss.params()["clip_high"] == float("inf")


def test_a_run_saved_before_components_had_their_own_keys_resumes(capsys, tiny_config, tmp_path):
    import yaml

    run_dir = train(tiny_config("train.steps=2", "checkpoint.every=1", "checkpoint.export_final=false"),
                    tmp_path / "run", stop_after=1)  # fmt: skip
    raw = yaml.safe_load((run_dir / "config.yaml").read_text())
    algo = raw["algo"]  # the flat layout of earlier versions: every key at algo level
    loss, adv, ent = algo.pop("policy_loss"), algo.pop("advantage"), algo.pop("entropy_controller")
    algo |= {"policy_loss": loss["name"], "clip_low": loss["clip_low"], "clip_high": 0.25, "std_eps": 1e-3,
             "advantage": adv["name"], "entropy_controller": ent["name"], "entropy_rate": 0.002,
             "dual_clip_c": 3.0, "cispo_clip_low": 1.0, "cispo_clip_high": 0.28, "pass_k": 4}  # fmt: skip
    raw["algo"] = algo
    raw["rollout"]["packed_weights"] = raw["rollout"].pop("onednn_weights")
    (run_dir / "config.yaml").write_text(yaml.safe_dump(raw))
    code, _, err = run(capsys, "train", "--resume", str(run_dir))
    assert code == 0, err
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())["algo"]
    assert saved["policy_loss"] == {"name": "ppo_clip", "clip_low": 0.2, "clip_high": 0.25}
    assert saved["advantage"] == {"name": "grpo", "eps": 1e-3}
    assert saved["entropy_controller"]["rate"] == 0.002
    code, _, err = run(capsys, "train", "grpo", "--resume", str(run_dir))
    assert code == 2 and "drop the recipe 'grpo'" in err


def test_eps_zero_is_refused_and_a_future_annotations_plugin_loads(tmp_path):
    from rlvr.errors import ConfigError

    with pytest.raises(ConfigError, match=r"algo.advantage.eps=0: Input should be greater than 0"):
        load_config(None, ["algo.advantage.eps=0"])
    plugin = tmp_path / "future_reward.py"
    plugin.write_text(
        "from __future__ import annotations\nfrom typing import Annotated\nfrom pydantic import Field\n"
        "from rlvr.rewards import REWARDS\n\n@REWARDS.register('short_future')\n"
        "def short(completion, example, *, chars: Annotated[int, Field(ge=1)] = 5) -> float:\n"
        "    return float(len(completion.response) < chars)\n"
    )
    config = load_config(None, [f"plugins=[{plugin}]", "rewards=[{name: short_future, chars: 3}]"])
    assert config.rewards[0].params() == {"chars": 3}


def test_a_verifier_that_raises_in_eval_names_the_sample():
    from rlvr.errors import RewardError
    from rlvr.evaluate import evaluate
    from rlvr.rollout import SamplingParams, make_engine

    model, tokenizer = load_model("tiny-random")
    examples = make_task("arithmetic", digits=1).split("eval")[:2]

    def broken(completion, example):
        raise KeyError("numbers")

    engine = make_engine("fast", model, tokenizer, 8)
    with pytest.raises(RewardError, match=r"raised KeyError: 'numbers' on example 'arith-eval-"):
        evaluate(engine, examples, broken, SamplingParams(max_new_tokens=2, temperature=0.0, return_logprobs=False))
