"""The defects the seams review found, each as a test that failed before its fix:

- training rewards scored the transcript (tool output included) while eval scored the model's text;
- ``tools.cost`` (per_call, otc) was validated and documented but never applied;
- a component's own defaults were unreachable (every algo key went to every function: GSPO's clip
  became PPO's 0.2) and a plugin could not add a component with a hyper-parameter of its own;
- groups whose rewards all agree got a non-zero advantage in float32.
"""

import json

import pytest
import torch

from rlvr.algos import ADVANTAGES, POLICY_LOSSES
from rlvr.algos.compose import build_algorithm
from rlvr.config import ToolsConfig, load_config
from rlvr.envs import ENVS, StepResult
from rlvr.errors import ConfigError
from rlvr.rewards import score
from rlvr.rewards.mix import reward_mix
from rlvr.trainer import train
from rlvr.types import Completion, Example, Turn

EXAMPLE = Example(id="q1", prompt=[{"role": "user", "content": "What is 6 x 7?"}], answer="42")


class GoldEchoEnv:
    """A tool that prints the gold answer in the reward's format whatever the model asked: a policy that
    merely calls it would be rewarded if rewards read the tool's output."""

    stop = [" "]

    def reset(self, example):
        self.answer = example.answer
        return example.prompt

    def step(self, text):
        return StepResult(f" \\boxed{{{self.answer}}} ", done=False, tool="echo")

    def close(self):
        pass


if "test_gold_echo" not in ENVS.names():
    ENVS.register("test_gold_echo")(lambda tools: GoldEchoEnv())


def train_rows(run_dir):
    return [r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "train/reward" in r]


def test_training_rewards_never_score_tool_output(tiny_config, tmp_path):
    config = tiny_config(
        "tools.env=test_gold_echo", "tools.max_turns=3", "tools.max_total_tokens=40", "rollout.max_new_tokens=6",
        "rewards=[{name: math, weight: 1.0}]", "train.steps=2", "log.samples_every=1",
        "checkpoint.export_final=false",
    )  # fmt: skip
    run_dir = train(config, tmp_path / "run")
    rows = train_rows(run_dir)
    assert max(r["tool/call_rate"] for r in rows) > 0.5, "the tool was called"
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    echoed = [s for s in samples if "\\boxed{" + s["answer"] + "}" in s["completion"]]
    assert echoed, "the transcripts hold the tool's boxed gold answer"
    assert all(s["components"]["math"] == 0.0 for s in echoed)  # tiny-random never writes it itself
    assert all(r["train/reward/math"] == 0.0 for r in rows)


def test_score_reads_the_model_text_not_the_transcript():
    turn = Turn(text="I will ask the tool ", observation="\\boxed{42}", tool="echo")
    completion = Completion(
        EXAMPLE, "I will ask the tool \\boxed{42}", [1], [5, 6], [0.0, 0.0], [1, 0], "turns", [turn]
    )
    assert score([completion], None, [("math", 1.0), ("boxed_format", 1.0)])[0] == [0.0]
    completion.turns.append(Turn(text="so \\boxed{42}", observation=""))
    assert score([completion], None, [("math", 1.0)])[0] == [1.0]


def calls(n: int) -> list[Turn]:
    return [Turn(text="call ", observation="out", tool="python") for _ in range(n)] + [Turn("done", "")]


def group_with_calls(counts: list[int], correct: list[bool]) -> list[Completion]:
    out = []
    for n, ok in zip(counts, correct, strict=True):
        text = "\\boxed{42}" if ok else "\\boxed{7}"
        out.append(Completion(EXAMPLE, text, [1], [1], [0.0], [1], "stop", calls(n)[:-1] + [Turn(text, "")]))
    return out


def mix_for(*overrides):
    config = load_config("tir", ["rewards=[{name: math, weight: 1.0}]", *overrides])
    return reward_mix(config, "math")


def test_tools_cost_none_adds_nothing():
    assert [t.name for t in mix_for()] == ["math"]


def test_tools_cost_per_call_subtracts_cost_coef_per_call():
    terms = mix_for("tools.cost=per_call", "tools.cost_coef=0.1")
    group = group_with_calls([0, 1, 3], [True, True, False])
    totals, parts = score(group, None, terms, verifier="math", group_size=3)
    assert parts["tool_calls"] == [0.0, -1.0, -3.0]
    assert totals == pytest.approx([1.0, 0.9, -0.3])


def test_tools_cost_otc_scales_correct_answers_by_the_tool_efficiency():
    terms = mix_for("tools.cost=otc", "tools.otc_c=1.0")
    group = group_with_calls([1, 2, 0, 3], [True, True, False, True])  # the fewest calls among correct: n = 1
    totals, parts = score(group, None, terms, verifier="math", group_size=4)
    import math

    # r_tool(m, n=1) = sin(f pi / 2), f = 2 m n / (m + n): m=1 -> 1; m=2 -> sin(4/3 pi/2); m=3 -> sin(3/2 pi/2)
    r2, r3 = math.sin(4 / 3 * math.pi / 2), math.sin(6 / 4 * math.pi / 2)
    assert parts["otc"] == pytest.approx([0.0, r2 - 1, 0.0, r3 - 1])
    assert totals == pytest.approx([1.0, r2, 0.0, r3])  # a correct answer earns weight x r_tool


def test_tools_cost_changes_a_real_run(tiny_config, tmp_path):
    base = ["tools.env=test_gold_echo", "tools.max_turns=3", "tools.max_total_tokens=40", "rollout.max_new_tokens=6",
            "train.steps=1", "checkpoint.export_final=false", "eval.before=false"]  # fmt: skip
    free = train_rows(train(tiny_config(*base), tmp_path / "free"))[0]
    costly = train_rows(train(tiny_config(*base, "tools.cost=per_call", "tools.cost_coef=0.5"), tmp_path / "cost"))[0]
    assert "train/reward/tool_calls" in costly and "train/reward/tool_calls" not in free
    assert costly["train/reward/tool_calls"] == pytest.approx(-costly["tool/calls_per_response"])
    assert costly["train/reward"] == pytest.approx(free["train/reward"] - 0.5 * costly["tool/calls_per_response"])


def test_a_components_own_defaults_apply_when_it_is_switched_on():
    config = load_config("grpo", ["algo.policy_loss=gspo"])
    assert config.algo.policy_loss.params() == {"clip_low": 3e-4, "clip_high": 4e-4}  # not PPO's 0.2
    assert build_algorithm(config.algo).policy_loss.hparams == {"clip_low": 3e-4, "clip_high": 4e-4}
    dapo = load_config("dapo", ["algo.policy_loss=gspo"])  # a new name drops the old loss's keys
    assert dapo.algo.policy_loss.params() == {"clip_low": 3e-4, "clip_high": 4e-4}
    rpp = load_config("reinforce_pp")
    assert rpp.algo.advantage.params() == {"eps": 1e-6}  # REINFORCE++'s eps, not GRPO's 1e-4
    kept = load_config("dapo", ["algo.policy_loss.clip_high=0.3"])
    assert kept.algo.policy_loss.params() == {"clip_low": 0.2, "clip_high": 0.3}


def test_a_plugin_adds_a_component_with_a_new_hyper_parameter(tmp_path):
    plugin = tmp_path / "my_loss.py"
    plugin.write_text(
        "from rlvr.algos import POLICY_LOSSES\n\n"
        "@POLICY_LOSSES.register('scaled_reinforce')\n"
        "def scaled(logprobs, old_logprobs, advantages, mask, *, scale: float = 1.0):\n"
        "    return -scale * advantages * logprobs * mask, {'loss/scale': scale}\n"
    )
    config = load_config("grpo", [f"plugins=[{plugin}]", "algo.policy_loss=scaled_reinforce",
                                  "algo.policy_loss.scale=0.5"])  # fmt: skip
    loss = build_algorithm(config.algo).policy_loss
    value, metrics = loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.ones(1, 2), torch.ones(1, 2))
    assert metrics == {"loss/scale": 0.5}
    with pytest.raises(ConfigError, match=r"algo.policy_loss.scale='big': Input should be a valid number"):
        load_config("grpo", [f"plugins=[{plugin}]", "algo.policy_loss=scaled_reinforce", "algo.policy_loss.scale=big"])
    assert "scaled_reinforce" in POLICY_LOSSES


@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "rloo", "reinforce_pp", "reinforce_pp_plain"])
def test_groups_whose_rewards_agree_get_exactly_zero(name):
    rewards = torch.tensor([[1.2] * 8, [0.2] * 8, [0.1, 0.3, 0.7, 1.1, 0.2, 0.2, 0.9, 1.2]])
    if name == "reinforce_pp_plain":
        rewards = rewards[:1]  # its baseline is the batch's: only an all-agreeing batch is exactly zero
    advantages, _ = ADVANTAGES.bind(name)(rewards)
    assert torch.equal(advantages[:2] if name != "reinforce_pp_plain" else advantages, torch.zeros_like(
        advantages[:2] if name != "reinforce_pp_plain" else advantages))  # fmt: skip


def test_the_multi_turn_budget_reaches_the_overlong_reward():
    config = load_config("tir", ["algo.overlong_cache_tokens=56"])
    terms = reward_mix(config, "math")
    assert [t.name for t in terms][-1] == "overlong"
    long = Completion(EXAMPLE, "x", [1], [1] * 256, [0.0] * 256, [1] * 256, "length", [], budget=256)
    assert score([long], None, terms)[1]["overlong"] == [0.0 - 0.0 + (200 - 256) / 56]
    assert ToolsConfig().packages == ["numpy", "sympy"]


def test_checkpoints_hold_every_registered_part_and_refuse_a_foreign_one(tiny_config, tmp_path):
    from rlvr.checkpoint import list_checkpoints
    from rlvr.errors import TrainingError

    config = tiny_config("train.steps=2", "checkpoint.every=1", "checkpoint.export_final=false")
    run_dir = train(config, tmp_path / "run", stop_after=1)
    path = list_checkpoints(run_dir)[-1] / "state.pt"
    state = torch.load(path, weights_only=False)
    assert set(state) == {"optimizer", "scheduler", "sampler", "coefficients", "rng", "step"}
    del state["sampler"]
    torch.save(state, path)
    with pytest.raises(TrainingError, match=r"lacks the state of sampler"):
        train(config, run_dir, resume=True)
