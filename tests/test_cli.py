"""The CLI: one-line errors with non-zero exit, tracebacks only with --debug."""

import json

import pytest

from rlvr.cli import main
from tests.conftest import TINY_OVERRIDES


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_bad_key_prints_one_line_and_exits_2(capsys):
    code, _, err = run(capsys, "train", "train.stepz=3")
    assert code == 2
    assert err.startswith("rlvr: error: ") and err.count("\n") == 1
    assert "unknown key 'train.stepz'. Did you mean steps?" in err


def test_debug_shows_the_traceback():
    from rlvr.errors import ConfigError

    with pytest.raises(ConfigError):
        main(["--debug", "train", "train.stepz=3"])


def test_missing_data_file_names_the_file(capsys, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"task:\n  name: jsonl\n  path: {tmp_path}/missing.jsonl\nmodel:\n  name: tiny-random\n")
    code, _, err = run(capsys, "train", str(recipe), f"run_dir={tmp_path}/run")
    assert (code, err) == (2, f"rlvr: error: task file not found: {tmp_path}/missing.jsonl\n")


def test_jsonl_errors_through_the_cli(capsys, tmp_path):
    recipe = tmp_path / "r.yaml"
    data = tmp_path / "data.jsonl"
    data.write_text('{"question": "1+1?", "answer": "#### 2"}\n{"question": "2+2?"}\n')
    recipe.write_text(f"task:\n  name: jsonl\n  path: {data}\nmodel:\n  name: tiny-random\n")
    code, _, err = run(capsys, "train", str(recipe), f"run_dir={tmp_path}/run")
    assert code == 2 and err.count("\n") == 1
    assert f"{data} line 2" in err and "answer" in err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    code, _, err = run(capsys, "train", str(recipe), f"task.path={empty}", f"run_dir={tmp_path}/run2")
    assert code == 2 and f"{empty} has no rows" in err


def test_missing_model_is_one_line(capsys, tmp_path):
    code, _, err = run(capsys, "train", "model.name=./no/such/model", f"run_dir={tmp_path}/run")
    assert code == 2 and err == "rlvr: error: model not found: ./no/such/model (no such directory)\n"


def test_a_reward_that_raises_stops_the_run_naming_the_sample(capsys, tmp_path):
    plugin = tmp_path / "bad_reward.py"
    plugin.write_text(
        "from rlvr.rewards import REWARDS\n"
        "@REWARDS.register('explodes')\n"
        "def explodes(completion, example):\n"
        "    raise ZeroDivisionError('boom')\n"
    )
    code, _, err = run(
        capsys,
        "train",
        *TINY_OVERRIDES,
        f"plugins=['{plugin}']",
        "rewards=[{name: explodes}]",
        "train.steps=1",
        f"run_dir={tmp_path}/run",
    )
    assert code == 2 and err.count("\n") == 1
    assert "explodes" in err and "arith-train-" in err and "boom" in err


def test_eval_command_writes_json(capsys, tmp_path):
    out = tmp_path / "eval.json"
    code, stdout, _ = run(
        capsys, "eval", "--model", "tiny-random", "eval.size=4", "rollout.max_new_tokens=2", "--out", str(out)
    )
    assert code == 0
    metrics = json.loads(out.read_text())
    assert metrics["eval/problems"] == 4.0 and 0.0 <= metrics["eval/accuracy"] <= 1.0
    assert "eval/accuracy" in stdout


def test_eval_pass_at_k(capsys, tmp_path):
    out = tmp_path / "eval.json"
    code, _, _ = run(
        capsys,
        "eval",
        "--model",
        "tiny-random",
        "eval.size=3",
        "eval.samples=4",
        "eval.temperature=1.0",
        "rollout.max_new_tokens=2",
        "--out",
        str(out),
    )
    assert code == 0
    metrics = json.loads(out.read_text())
    assert {"eval/pass@2", "eval/pass@4"} <= metrics.keys()
    assert metrics["eval/accuracy"] <= metrics["eval/pass@2"] <= metrics["eval/pass@4"]


def test_eval_on_several_tasks_with_a_per_sample_dump(capsys, tmp_path):
    out, dump = tmp_path / "eval.json", tmp_path / "samples.jsonl"
    code, stdout, _ = run(
        capsys, "eval", "--model", "tiny-random", "--task", "arithmetic", "--task", "{name: countdown, seed: 1}",
        "eval.size=3", "eval.samples=2", "eval.temperature=1", "rollout.max_new_tokens=2",
        "--out", str(out), "--samples", str(dump),
    )  # fmt: skip
    assert code == 0
    results = json.loads(out.read_text())
    assert [r["task"] for r in results] == ["arithmetic", "countdown"]
    assert all(r["eval/problems"] == 3.0 and "eval/maj@2" in r for r in results)
    rows = [json.loads(line) for line in dump.read_text().splitlines()]
    assert len(rows) == 2 * 3 * 2  # tasks x problems x samples
    assert {"task", "id", "sample", "prompt", "completion", "answer", "reward", "correct", "tokens"} <= rows[0].keys()
    assert "on countdown" in stdout


def test_resume_of_a_directory_without_a_run(capsys, tmp_path):
    code, _, err = run(capsys, "train", "--resume", str(tmp_path))
    assert code == 2 and "nothing to resume" in err


def test_recipes_and_tasks_list(capsys):
    code, out, _ = run(capsys, "recipes")
    names = [line.split()[0] for line in out.splitlines()]
    assert code == 0 and {"grpo", "dr_grpo", "dapo", "gspo", "cispo", "rloo", "reinforce_pp", "ppo"} <= set(names)
    assert "GRPO (Shao et al. 2024" in out
    code, out, _ = run(capsys, "tasks")
    assert "arithmetic" in out and "math" in out


def test_eval_on_a_run_checkpoint_and_on_the_final_export(capsys, tmp_path):
    from rlvr.config import load_config
    from rlvr.trainer import train

    run_dir = train(load_config(None, [*TINY_OVERRIDES, "train.steps=2", "checkpoint.every=1"]), tmp_path / "run")
    common = ["eval.size=4", "rollout.max_new_tokens=2", "eval.verifier=starts_with_a_or_e"]
    results = []
    for model in (run_dir, run_dir / "checkpoints" / "step-000002"):
        out = tmp_path / "eval.json"
        code, _, err = run(capsys, "eval", "--model", str(model), *common, "--out", str(out))
        assert code == 0, err
        results.append(json.loads(out.read_text()))
    assert results[0]["model"].endswith("final")
    assert results[0]["eval/accuracy"] == results[1]["eval/accuracy"]  # same weights, greedy

    import torch
    from transformers import AutoModelForCausalLM

    from rlvr.checkpoint import load_run_policy

    exported = AutoModelForCausalLM.from_pretrained(run_dir / "final").state_dict()
    from_checkpoint, _ = load_run_policy(run_dir)
    for name, tensor in from_checkpoint.state_dict().items():
        torch.testing.assert_close(tensor, exported[name])
