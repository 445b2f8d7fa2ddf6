"""SFT and SFT+RL end to end on tiny-random: learning, stages and exact resume across their boundary,
guided groups (LUFFY, Prefix-RFT), ReLIFT's buffer, and the `rlvr sft` command."""

import json

import pytest
import torch
from safetensors.torch import load_file

from rlvr.checkpoint import list_checkpoints
from rlvr.cli import main
from rlvr.config import load_config
from rlvr.demos import DemoBank, render
from rlvr.demos.guided import guided_groups
from rlvr.errors import ConfigError
from rlvr.metrics import read_metrics
from rlvr.models import tiny_random
from rlvr.rewards import REWARDS
from rlvr.rollout import SamplingParams, generate, make_engine
from rlvr.tasks import make_task
from rlvr.trainer import train
from rlvr.types import Demonstration

if "never" not in REWARDS:

    @REWARDS.register("never")
    def never(completion, example) -> float:
        """Always wrong: every group fails (ReLIFT's trigger)."""
        return 0.0


def demos_file(tmp_path, text="a a a", n=64):
    """Demonstrations for the default task's first ``n`` train prompts, each answering ``text``."""
    train_set = make_task("arithmetic").split("train")
    path = tmp_path / "demos.jsonl"
    rows = [{"prompt": e.prompt, "completion": text, "answer": e.answer} for e in train_set[:n]]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def rows(run_dir, key):
    return [r for r in read_metrics(run_dir / "metrics.jsonl") if key in r]


def test_sft_alone_raises_held_out_accuracy(tiny_config, tmp_path):
    """Eight SFT steps on answers starting with "a" take the held-out toy reward from below 0.4 to ~1."""
    config = tiny_config(
        f"demos.path={demos_file(tmp_path, text='a a a')}", "stages=[{kind: sft, steps: 8}]", "eval.before=true",
        "checkpoint.export_final=false", "sft.batch_size=8",
    )  # fmt: skip
    run_dir = train(config, tmp_path / "run")
    evals = [r["eval/accuracy"] for r in rows(run_dir, "eval/accuracy")]
    nll = [r["sft/nll"] for r in rows(run_dir, "sft/nll")]
    assert len(nll) == 8 and nll[-1] < nll[0] / 4
    assert evals[0] < 0.4 and evals[-1] > 0.8


def test_an_auxiliary_sft_loss_speeds_up_learning(tiny_config, tmp_path):
    """The toy reward from ~0.16 to above 0.7 (mean of steps 7-12) with demonstrations beside the RL loss;
    plain GRPO takes off anywhere between steps 5 and 28 (test_trainer)."""
    config = tiny_config(
        f"demos.path={demos_file(tmp_path, n=2000)}", "train.steps=12", "checkpoint.export_final=false",
        "sft.coef=1.0",
    )  # fmt: skip
    run_dir = train(config, tmp_path / "run")
    rewards = [r["train/reward"] for r in rows(run_dir, "train/reward")]
    assert sum(rewards[:2]) / 2 < 0.35
    assert sum(rewards[-6:]) / 6 > 0.7


def test_luffy_raises_the_demonstrations_probability(tiny_config, tmp_path):
    """Two demonstrations in each group, shaped with a small gamma (tiny-random gives any token ~1/49k):
    the policy's mean probability of the demonstrations' tokens grows a hundredfold in 12 steps."""
    config = tiny_config(
        f"demos.path={demos_file(tmp_path, n=2000)}", "train.steps=12", "checkpoint.export_final=false",
        "sft.group_demos=2", "sft.off_policy_loss.gamma=1e-4",
    )  # fmt: skip
    run_dir = train(config, tmp_path / "run")
    steps = rows(run_dir, "train/reward")
    assert all(r["mix/demo_rollouts"] == 8 and r["mix/demo_accuracy"] == 1.0 for r in steps)  # 4 prompts x 2
    assert steps[-1]["loss/off_policy_prob"] > 100 * steps[0]["loss/off_policy_prob"]
    assert all(r["tokens/generated"] <= 4 * 6 * 2 for r in steps)  # 6 sampled rollouts a group, 2 tokens each


def test_stages_resume_exactly_across_their_boundary(tiny_config, tmp_path):
    overrides = (
        f"demos.path={demos_file(tmp_path)}", "stages=[{kind: sft, steps: 2, lr: 0.05}, {kind: rl, steps: 2}]",
        "checkpoint.every=1", "checkpoint.export_final=false", "sft.batch_size=4", "sft.coef=0.5",
    )  # fmt: skip
    straight = train(tiny_config(*overrides), tmp_path / "straight")
    interrupted = train(tiny_config(*overrides), tmp_path / "resumed", stop_after=2)  # killed at the boundary
    resumed = train(tiny_config(*overrides), interrupted, resume=True)
    a, b = read_metrics(straight / "metrics.jsonl"), read_metrics(resumed / "metrics.jsonl")
    assert [r["step"] for r in a] == [r["step"] for r in b] == [1, 2, 2, 3, 4, 4]  # eval between stages, and at the end
    for row_a, row_b in zip(a, b, strict=True):
        for key in row_a:
            if not key.startswith(("time/", "throughput/")):
                assert row_a[key] == pytest.approx(row_b[key], rel=1e-4, abs=1e-6), key
    assert [r["train/lr"] for r in a if "train/lr" in r] == pytest.approx([0.05, 0.05, 0.1, 0.1])  # each stage's lr
    assert "sft/nll" in a[3] and "train/reward" in a[3]  # the RL stage keeps the auxiliary SFT loss
    weights_a = load_file(str(list_checkpoints(straight)[-1] / "model.safetensors"))
    weights_b = load_file(str(list_checkpoints(resumed)[-1] / "model.safetensors"))
    for name, tensor in weights_a.items():
        torch.testing.assert_close(tensor, weights_b[name], rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def engine():
    model, tokenizer = tiny_random(0)
    return make_engine("fast", model, tokenizer, batch_size=64)


def bank_of(engine, examples, text="The answer is 4."):
    demos = [Demonstration(e, ((text, True),)) for e in examples]
    return DemoBank(examples, demos.__getitem__, engine.tokenizer)


def test_a_long_demonstrations_prefix_leaves_room_in_the_budget(engine):
    train_set = make_task("arithmetic").split("train")
    cfg = load_config(None, ["model.name=tiny-random", "sft.prefix_rollouts=4", "sft.prefix_fraction=[0.7, 0.9]"])
    bank = bank_of(engine, train_set[:1], text=" ".join(["step"] * 60))
    policy = lambda c, e, x, n, s: generate(e, x, n, s)  # noqa: E731
    (group,) = guided_groups(cfg, engine, train_set[:1], 8, SamplingParams(max_new_tokens=10), bank, policy)
    for c in group[4:]:
        assert c.origin == "prefix" and c.loss_mask.index(1) <= 9 and len(c.token_ids) <= 10


def test_guided_groups_hold_the_policys_rollouts_prefix_rollouts_and_the_demonstration(engine):
    train_set = make_task("arithmetic").split("train")
    with_demo, without = train_set[0], next(e for e in train_set if e.prompt != train_set[0].prompt)
    cfg = load_config(None, ["model.name=tiny-random", "sft.group_demos=1", "sft.prefix_rollouts=2"])
    bank = bank_of(engine, [with_demo])
    sampling = SamplingParams(max_new_tokens=12)
    torch.manual_seed(0)
    policy = lambda c, e, x, n, s: generate(e, x, n, s)  # noqa: E731
    groups = guided_groups(cfg, engine, [with_demo, without], 8, sampling, bank, policy)
    assert [c.origin for c in groups[0]] == ["policy"] * 5 + ["prefix"] * 2 + ["demo"]
    assert [c.origin for c in groups[1]] == ["policy"] * 8  # no demonstration: a plain group
    demo = render(engine.tokenizer, bank.demo(0))
    assert groups[0][-1].token_ids == demo.token_ids and groups[0][-1].example is with_demo
    for c in groups[0][5:7]:
        cut = c.loss_mask.index(1)  # the prefix: demonstration tokens, not trained, log-prob 0
        assert 0 < cut < len(demo.token_ids) and c.token_ids[:cut] == demo.token_ids[:cut]
        assert all(lp == 0.0 for lp in c.logprobs[:cut]) and all(c.loss_mask[cut:])
        assert c.text.startswith(engine.tokenizer.decode(demo.token_ids[:cut], skip_special_tokens=True))
        assert len(c.token_ids) <= sampling.max_new_tokens


def test_relift_sfts_on_failed_prompts_once_its_buffer_fills(tiny_config, tmp_path):
    config = tiny_config(
        f"demos.path={demos_file(tmp_path, n=2000)}", "train.steps=4", "sft.relift_size=6",
        "rewards=[{name: never, weight: 1.0}]", "eval.verifier=never", "checkpoint.export_final=false",
        "optim.schedule=linear",
    )  # fmt: skip
    run_dir = train(config, tmp_path / "run")
    steps = rows(run_dir, "relift/buffer")
    # ReLIFT's extra updates leave the schedule alone: linear decay over the 4 RL updates, 0.1 (1 - k/4)
    assert [r["train/lr"] for r in steps] == pytest.approx([0.075, 0.05, 0.025, 0.0])
    assert [r["relift/added"] for r in steps] == [4, 4, 4, 4]  # 4 prompts a step, all failed, all with a demo
    assert [r["relift/sft_update"] for r in steps] == [0, 1, 1, 0]  # 4 -> 8 >= 6: update; 2 + 4 = 6: update
    assert [r["relift/buffer"] for r in steps] == [4, 2, 0, 4]
    assert all("relift/nll" in r for r in steps if r["relift/sft_update"])


def test_rlvr_sft_runs_the_recipes_sft_stages_only(tmp_path):
    run_dir = tmp_path / "sft"
    code = main([
        "sft", "tir_sft", "model.name=tiny-random", f"run_dir={run_dir}", "eval.size=2", "demos.size=4",
        "stages=[{kind: sft, steps: 2}, {kind: rl, steps: 3}]", "log.backends=[]", "checkpoint.export_final=false",
        "log.console=false",
    ])  # fmt: skip
    assert code == 0
    saved = load_config(str(run_dir / "config.yaml"))
    assert [s.kind for s in saved.stages] == ["sft"] and saved.train.steps == 2
    assert main(["sft", "grpo", "stages=[{kind: rl, steps: 1}]", "model.name=tiny-random"]) == 2  # nothing to run


def test_rlvr_sft_train_steps_is_one_sft_stage(tmp_path):
    run_dir = tmp_path / "sft"
    args = ["sft", "model.name=tiny-random", "train.steps=2", f"run_dir={run_dir}", "eval.size=2", "demos.size=4",
            "log.backends=[]", "checkpoint.export_final=false", "log.console=false"]  # fmt: skip
    assert main(args) == 0
    saved = load_config(str(run_dir / "config.yaml"))
    assert [(s.kind, s.steps) for s in saved.stages] == [("sft", 2)]


def test_auxiliary_demonstrations_are_dealt_to_every_mini_batch(tiny_config, tmp_path, monkeypatch):
    import rlvr.trainer

    seen = []
    real = rlvr.trainer.update_step

    def counting(model, ref, opt, sched, micro, settings, *args, **kwargs):
        seen.append(sum(int((mb.sft.sum(dim=1) > 0).sum()) for mb in micro))
        return real(model, ref, opt, sched, micro, settings, *args, **kwargs)

    monkeypatch.setattr(rlvr.trainer, "update_step", counting)
    config = tiny_config(
        f"demos.path={demos_file(tmp_path)}", "train.steps=2", "train.mini_batches=2", "train.inner_epochs=2",
        "sft.coef=0.5", "sft.batch_size=6", "checkpoint.export_final=false",
    )  # fmt: skip
    run_dir = train(config, tmp_path / "run")
    assert seen == [3, 3, 3, 3, 3, 3, 3, 3]  # 2 steps x 2 epochs x 2 mini-batches, 6 demonstrations split evenly
    assert all(r["sft/nll"] > 0 for r in rows(run_dir, "train/reward"))


def test_demonstrations_that_match_no_training_prompt_are_refused(tiny_config, tmp_path):
    path = tmp_path / "other.jsonl"
    path.write_text(json.dumps({"prompt": "Name a colour.", "completion": "red"}) + "\n")
    with pytest.raises(ConfigError, match="none of the 1 demonstrations .* matches a training prompt"):
        train(tiny_config(f"demos.path={path}", "sft.group_demos=1"), tmp_path / "run")
    assert not (tmp_path / "run").exists()  # a failed start leaves nothing behind
