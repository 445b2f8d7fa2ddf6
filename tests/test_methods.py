"""Every method switch end to end on tiny-random: recipes run, state survives resume, combinations are checked."""

import pytest
import torch
from safetensors.torch import load_file

from rlvr.checkpoint import list_checkpoints
from rlvr.config import available_recipes, load_config
from rlvr.errors import ConfigError
from rlvr.metrics import read_metrics
from rlvr.trainer import train
from tests.conftest import TINY_OVERRIDES

QUICK = ["train.steps=2", "checkpoint.export_final=false", "rollout.max_new_tokens=3"]


def train_rows(run_dir):
    return [r for r in read_metrics(run_dir / "metrics.jsonl") if "train/reward" in r]


@pytest.mark.parametrize("recipe", available_recipes())
def test_every_recipe_trains_on_tiny_random(recipe, tmp_path):
    overrides = [*TINY_OVERRIDES, *QUICK]
    if recipe == "dapo":
        overrides.append("algo.overlong_cache_tokens=1")
    if load_config(recipe).think.budget:
        overrides.append("think.budget=2")  # within the tiny rollout.max_new_tokens
    staged = load_config(recipe).stages
    if staged:  # two steps of each of the recipe's stage kinds, in its order
        overrides.remove("train.steps=2")
        kinds = list(dict.fromkeys(s.kind for s in staged))
        overrides.append("stages=[" + ", ".join(f"{{kind: {k}, steps: 2}}" for k in kinds) + "]")
    run_dir = train(load_config(recipe, overrides), tmp_path / recipe)
    rows = read_metrics(run_dir / "metrics.jsonl")
    for kind in dict.fromkeys(s.kind for s in staged) if staged else ["rl"]:
        key = "sft/nll" if kind == "sft" else "train/reward"
        values = [r[key] for r in rows if key in r]
        assert len(values) == 2, kind
        assert all(torch.isfinite(torch.tensor(v)) for v in values)


def test_dynamic_sampling_drops_agreeing_groups_and_refills(tiny_config, tmp_path):
    run_dir = train(
        tiny_config(*QUICK, "rollout.dynamic_sampling=true", "rollout.max_sampling_rounds=4", "train.steps=3"),
        tmp_path / "run",
    )
    rows = train_rows(run_dir)
    assert sum(r["sampling/dropped_groups"] for r in rows) > 0  # ~16% success: all-zero groups are common
    assert all(1 <= r["sampling/rounds"] <= 4 for r in rows)
    assert all(r["sampling/kept_groups"] <= 4 for r in rows)
    assert any(r["sampling/rounds"] > 1 for r in rows)


def test_overlong_penalty_is_a_logged_component(tiny_config, tmp_path):
    run_dir = train(tiny_config(*QUICK, "algo.overlong_cache_tokens=2"), tmp_path / "run")
    rows = train_rows(run_dir)
    # every completion runs to the 3-token limit: penalty ((3 - 2) - 3) / 2 = -1
    assert all(r["train/reward/overlong"] == pytest.approx(-1.0) for r in rows)


def test_ppo_critic_trains_saves_and_resumes_exactly(tiny_config, tmp_path):
    overrides = (*QUICK, "train.steps=4", "checkpoint.every=2", "algo.advantage=gae", "critic.model=policy",
                 "critic.lr=0.01", "algo.kl_coef=0.05", "algo.kl_in_reward=true", "algo.kl_target=0.01",
                 "algo.entropy_coef=0.01", "algo.entropy_target=5.0")  # fmt: skip
    straight = train(tiny_config(*overrides), tmp_path / "straight")
    rows = train_rows(straight)
    assert all("critic/loss" in r and "critic/value_mean" in r for r in rows)
    assert rows[-1]["critic/value_mean"] != 0.0  # the zero-initialized head has learned something
    assert rows[0]["train/kl_coef"] == pytest.approx(0.05) and rows[-1]["train/kl_coef"] != pytest.approx(0.05)
    assert rows[-1]["train/entropy_coef"] != pytest.approx(0.01)
    state = torch.load(list_checkpoints(straight)[-1] / "state.pt", weights_only=False)
    assert "critic" in state and "critic_optimizer" in state

    interrupted = train(tiny_config(*overrides), tmp_path / "resumed", stop_after=2)
    resumed = train(tiny_config(*overrides), interrupted, resume=True)
    for a, b in zip(train_rows(straight), train_rows(resumed), strict=True):
        for key in ("train/reward", "critic/loss", "train/kl_coef", "train/entropy_coef", "loss/total"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key
    wa = load_file(str(list_checkpoints(straight)[-1] / "model.safetensors"))
    wb = load_file(str(list_checkpoints(resumed)[-1] / "model.safetensors"))
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], rtol=1e-5, atol=1e-6)


def test_truncated_importance_sampling_logs_weights(tiny_config, tmp_path):
    run_dir = train(tiny_config(*QUICK, "algo.tis_cap=2.0"), tmp_path / "run")
    rows = train_rows(run_dir)
    assert all(0.99 < r["tis/weight_mean"] <= 1.01 for r in rows)  # the HF engine is the trainer: weights ~1


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["algo.advantage=gae"], r"algo.advantage=gae needs a value model: set critic.model"),
        (["critic.model=policy"], r"critic.model is set but algo.advantage=grpo does not use a value model"),
        (["algo.policy_loss.clip_low=-0.1"], r"algo.policy_loss.clip_low=-0.1: Input should be greater than 0"),
        (["algo.policy_loss.clip_high=-1"], r"algo.policy_loss.clip_high=-1: Input should be greater than 0"),
        (
            ["algo.policy_loss=dual_clip", "algo.policy_loss.dual_clip_c=0.5"],
            r"algo.policy_loss.dual_clip_c=0.5: Input should be greater than 1",
        ),
        (
            ["algo.advantage.pass_k=9", "algo.advantage=pass_k"],
            r"algo.advantage=pass_k: .*between 1 and the group size 8, got 9",
        ),
        (["algo.advantage.pass_k=2"], r"unknown key 'algo.advantage.pass_k' for advantage estimator 'grpo'"),
        (["algo.policy_loss.clip=0.3"], r"'algo.policy_loss.clip' .* Did you mean clip_low, clip_high\?"),
        (["algo.clip_high=0.28"], r"algo.clip_high is now the policy loss.s own key: set algo.policy_loss.clip_high"),
        (["critic.gamma=0.9"], r"set algo.advantage.gamma \(with algo.advantage: gae\)"),
        (["rewards=[{name: math, strict: true}]"], r"unknown key 'rewards\[0\].strict' for reward 'math'"),
        (["algo.kl_target=0.1"], r"algo.kl_target adapts algo.kl_coef, which is 0"),
        (["algo.advantage=bnpo"], r"algo.advantage=bnpo needs 0/1 rewards: .*\(got math x 1 \+ boxed_format x 0.2\)"),
        (["algo.entropy_target=1.0"], r"algo.entropy_target adapts algo.entropy_coef"),
        (["algo.overlong_cache_tokens=48"], r"algo.overlong_cache_tokens=48 must be below rollout.max_new_tokens=48"),
        (
            ["algo.advantage=grop"],
            r"unknown advantage estimator 'grop'. Did you mean grpo, .* Valid: .*rloo, gae \(with critic",
        ),
        (["algo.aggregation=token_sum"], r"algo.aggregation: unknown loss aggregation 'token_sum'.* Valid:"),
        (["algo.policy_loss=gpso"], r"algo.policy_loss: unknown policy loss 'gpso'. Did you mean gspo\?"),
    ],
)
def test_wrong_combinations_are_refused_at_load(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


@pytest.mark.parametrize("advantage", ["pass_k", "bnpo"])
def test_binary_estimators_train_on_a_binary_reward(advantage, tiny_config, tmp_path):
    extra = ["algo.advantage.pass_k=2"] if advantage == "pass_k" else []
    run_dir = train(tiny_config(*QUICK, f"algo.advantage={advantage}", *extra), tmp_path / "run")
    assert len(train_rows(run_dir)) == 2


def test_a_non_binary_custom_reward_under_pass_k_is_one_line(tiny_config, tmp_path):
    from rlvr.errors import TrainingError
    from rlvr.rewards import REWARDS

    if "half" not in REWARDS:
        REWARDS.register("half")(lambda completion, example: 0.5)
    config = tiny_config(*QUICK, "algo.advantage=pass_k", "rewards=[{name: half}]")
    with pytest.raises(TrainingError, match=r"^algo.advantage=pass_k: .*binary"):
        train(config, tmp_path / "run")


def test_skywork_entropy_controller_steps_by_delta_and_applies_below_target(tiny_config, tmp_path):
    common = (*QUICK, "train.steps=3", "algo.entropy_controller=skywork", "algo.entropy_coef=0.001")
    below = train_rows(train(tiny_config(*common, "algo.entropy_target=20.0"), tmp_path / "below"))
    # tiny-random's entropy (~10.8) is below 20: the coefficient rises by 1e-4 a step and is applied
    assert [r["train/entropy_coef"] for r in below] == pytest.approx([0.001, 0.0011, 0.0012])
    above = train_rows(train(tiny_config(*common, "algo.entropy_target=1.0"), tmp_path / "above"))
    # above the target: no bonus is applied from the next step on
    assert [r["train/entropy_coef"] for r in above] == pytest.approx([0.001, 0.0, 0.0])


def test_tis_keeps_the_old_policy_fixed_across_inner_epochs(tiny_config, tmp_path):
    """The trainer's old log-probs are taken once, before any update of the step: the second epoch's
    ratio is then measured against the policy that sampled, and moves away from 1."""
    rows = train_rows(
        train(tiny_config(*QUICK, "algo.tis_cap=2.0", "train.inner_epochs=2", "train.steps=2"), tmp_path / "r")
    )
    assert all(r["loss/ratio_max"] > 1.01 for r in rows)
    assert all(0.99 < r["tis/weight_mean"] <= 1.01 for r in rows)
