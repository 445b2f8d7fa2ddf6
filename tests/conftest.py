"""Shared fixtures: a tiny run config and a learnable toy reward for tiny-random."""

import pytest
import torch

from rlvr.config import load_config
from rlvr.rewards import REWARDS
from rlvr.types import Completion, Example

torch.set_num_threads(1)  # tiny models: one thread beats two synchronising ones

if "starts_with_a_or_e" not in REWARDS:

    @REWARDS.register("starts_with_a_or_e")
    def starts_with_a_or_e(completion: Completion, example: Example) -> float:
        """About 16% of tiny-random's first tokens start with a or e: learnable from below 0.2."""
        return 1.0 if completion.response.lstrip()[:1].lower() in ("a", "e") else 0.0


TINY_OVERRIDES = [
    "model.name=tiny-random",
    "rollout.prompts_per_step=4",
    "rollout.group_size=8",
    "rollout.max_new_tokens=2",
    "rewards=[{name: starts_with_a_or_e, weight: 1.0}]",
    "eval.verifier=starts_with_a_or_e",
    "eval.size=8",
    "eval.before=false",
    "log.console=false",
    "log.tensorboard=false",
    "optim.lr=0.1",  # a 16-wide random model moves only the embeddings of sampled tokens: a big step
    "train.micro_batch_size=16",
    "train.precision=fp32",  # the same numbers on every CPU (auto is bf16 only where the CPU has bf16 units)
]


@pytest.fixture
def tiny_config():
    def make(*overrides: str):
        return load_config(None, [*TINY_OVERRIDES, *overrides])

    return make


@pytest.fixture
def count_encodes(monkeypatch):
    """The prompt tokens of each ``rlvr.learner.forward.hidden.encode_prompts`` call, in order (the prompts'
    forward passes)."""
    import rlvr.learner.forward.hidden
    import rlvr.learner.forward.logprobs

    encoded = []
    real = rlvr.learner.forward.hidden.encode_prompts

    def counting(body, prompt_ids, prompt_mask):
        encoded.append(int(prompt_mask.sum()))
        return real(body, prompt_ids, prompt_mask)

    monkeypatch.setattr(rlvr.learner.forward.logprobs, "encode_prompts", counting)  # the step's prompts, once
    monkeypatch.setattr(rlvr.learner.forward.hidden, "encode_prompts", counting)  # a micro-batch's own prompts
    return encoded


@pytest.fixture(scope="module")
def lively():
    """tiny-random with weights redrawn at std 0.4: at the default init (std 0.02) greedy decoding
    repeats one token whatever the prompt, which would hide wrong positions or padding; here the
    greedy continuation depends on every prompt token and position."""
    from rlvr.models import tiny_random

    model, tokenizer = tiny_random(seed=3)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.4)
    return model, tokenizer
