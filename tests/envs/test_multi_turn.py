"""The multi-turn loop: observations are appended as masked tokens, never trained on, and the
model's own tokens keep the log-probs of the context they were sampled in."""

import pytest
import torch

from rlvr.config import ToolsConfig
from rlvr.envs import ENVS, StepResult, tool_metrics
from rlvr.envs.rollout import multi_turn_generate
from rlvr.learner.forward.logprobs import completion_logprobs
from rlvr.learner.microbatch import make_micro_batches
from rlvr.learner.update import LossSettings, update_step
from rlvr.models import tiny_random
from rlvr.rollout import SamplingParams
from rlvr.rollout.hf import HFGenerateEngine
from rlvr.tasks import make_task

OBSERVATION = " [tool says: 42] "


class EchoEnv:
    """Every turn that ends at a space is a 'tool call'; the tool answers with a fixed text."""

    stop = [" "]

    def reset(self, example):
        return example.prompt

    def step(self, text):
        if len(text) % 3 == 0:  # some turns fail: the loop must turn the exception into an observation
            raise RuntimeError("tool broke")
        return StepResult(OBSERVATION, done=False, tool="echo")

    def close(self):
        pass


if "test_echo" not in ENVS.names():
    ENVS.register("test_echo")(lambda tools: EchoEnv())


@pytest.fixture(scope="module")
def episodes():
    model, tokenizer = tiny_random(seed=3)
    engine = HFGenerateEngine(model, tokenizer)
    examples = make_task("arithmetic", digits=2, train_size=3).split("train")
    tools = ToolsConfig(env="test_echo", max_turns=4, max_total_tokens=60)
    torch.manual_seed(0)
    groups = multi_turn_generate(engine, examples, 6, SamplingParams(max_new_tokens=8), tools)
    return engine, [c for g in groups for c in g]


def test_observations_are_masked_tokens_with_zero_logprob(episodes):
    engine, completions = episodes
    obs_ids = engine.tokenizer(OBSERVATION, add_special_tokens=False)["input_ids"]
    assert max(len(c.turns) for c in completions) >= 3, "several turns happen"
    for c in completions:
        assert len(c.token_ids) == len(c.logprobs) == len(c.loss_mask) <= 60
        masked = [i for i, m in enumerate(c.loss_mask) if m == 0]
        tool_turns = [t for t in c.turns if t.observation]
        assert len(masked) <= len(obs_ids) * len(tool_turns) + 20  # error texts are masked too
        for i in masked:
            assert c.logprobs[i] == 0.0
        # every observation's tokens sit, masked, right after its turn's model tokens
        position = 0
        for turn in c.turns:
            model_ids = engine.tokenizer(turn.text, add_special_tokens=False)["input_ids"]
            position = _skip_trained(c, position)
            if turn.observation:
                ids = engine.tokenizer(turn.observation, add_special_tokens=False)["input_ids"]
                span = c.token_ids[position : position + len(ids)]
                assert span == ids[: len(span)] and set(c.loss_mask[position : position + len(span)]) <= {0}
                position += len(span)
            assert model_ids is not None
        assert c.text == "".join(t.text + t.observation for t in c.turns)
        assert c.response == "".join(t.text for t in c.turns)


def _skip_trained(c, position: int) -> int:
    while position < len(c.loss_mask) and c.loss_mask[position] == 1:
        position += 1
    return position


def test_tool_exceptions_become_observations_and_metrics(episodes):
    _, completions = episodes
    errors = [t for c in completions for t in c.turns if t.error]
    assert errors and all("tool broke" in t.observation for t in errors)
    metrics = tool_metrics(completions)
    assert 0 < metrics["tool/error_rate"] < 1
    assert metrics["tool/call_rate"] > 0.5 and metrics["tool/turns"] > 1.5
    calls = sum(t.tool is not None or t.error is not None for c in completions for t in c.turns)
    assert metrics["tool/calls_per_response"] == pytest.approx(
        sum(t.tool is not None for c in completions for t in c.turns) / len(completions)
    )
    assert calls >= len(errors)


def test_model_tokens_keep_the_logprobs_of_their_multi_turn_context(episodes):
    engine, completions = episodes
    width = max(len(c.token_ids) for c in completions)
    batches = make_micro_batches(completions, {"advantages": torch.zeros(len(completions), width)}, 64, 0)
    with torch.no_grad():
        for batch in batches:
            recomputed, _ = completion_logprobs(engine.model, batch, temperature=1.0)
            torch.testing.assert_close(batch.rollout_logprobs, recomputed * batch.mask, rtol=1e-4, atol=1e-4)


def _gradients(completions, advantages, rollout_logprobs):
    model, _ = tiny_random(seed=3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    settings = LossSettings("ppo_clip", "token_mean", 1.0, max_tokens=60)
    batches = make_micro_batches(completions, {"advantages": advantages}, 64, 0)
    for b in batches:
        b.old_logprobs = rollout_logprobs[b.index][:, : b.mask.shape[1]] * b.token_mask
    metrics = update_step(model, None, optimizer, scheduler, batches, settings, max_grad_norm=1e9, step=1)
    return metrics["loss/total"], [p.grad.clone() for p in model.parameters() if p.grad is not None]


def test_observation_tokens_receive_zero_gradient(episodes):
    """Garbage advantages and old log-probs on observation tokens change nothing; the same garbage
    on one model token changes the gradients (so the test can fail)."""
    _, completions = episodes
    width = max(len(c.token_ids) for c in completions)
    mask = torch.zeros(len(completions), width)
    logprobs = torch.zeros(len(completions), width)
    for i, c in enumerate(completions):
        mask[i, : len(c.loss_mask)] = torch.tensor(c.loss_mask, dtype=torch.float)
        logprobs[i, : len(c.logprobs)] = torch.tensor(c.logprobs)
    advantages = torch.linspace(-1, 1, len(completions)).unsqueeze(1).expand(-1, width).clone()
    observed = torch.zeros_like(mask, dtype=torch.bool)
    for i, c in enumerate(completions):
        observed[i, : len(c.loss_mask)] = mask[i, : len(c.loss_mask)] == 0
    assert observed.any()
    loss, grads = _gradients(completions, advantages, logprobs)
    garbage_adv = torch.where(observed, torch.full_like(advantages, 1e6), advantages)
    garbage_lp = torch.where(observed, torch.full_like(logprobs, -50.0), logprobs)
    loss2, grads2 = _gradients(completions, garbage_adv, garbage_lp)
    assert loss2 == loss
    for a, b in zip(grads, grads2, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    model_token = (mask > 0).nonzero()[0]
    poked = advantages.clone()
    poked[model_token[0], model_token[1]] = 1e6
    loss3, _ = _gradients(completions, poked, logprobs)
    assert loss3 != loss
