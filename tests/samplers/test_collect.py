"""The collector with hints and a ragged allocation, on a scripted engine: what is trained, what is
counted, what the sampler is told."""

import itertools

from rlvr.collect import collect
from rlvr.config import load_config
from rlvr.rewards.mix import reward_mix
from rlvr.rollout import SamplingParams
from rlvr.samplers import ShuffledSampler
from rlvr.samplers.hints import HintScaffold
from rlvr.types import Example
from tests.rollout.test_think import ScriptedEngine

SAMPLING = SamplingParams(max_new_tokens=16)


def task(*answers: str) -> list[Example]:
    return [Example(f"q{i}", [{"role": "user", "content": f"Q{i}"}], a, {"hints": ["h1", "h2"]})
            for i, a in enumerate(answers)]  # fmt: skip


def config(*overrides: str):
    return load_config(None, ["rewards=[{name: math}]", "rollout.prompts_per_step=1", "rollout.group_size=4",
                              *overrides])  # fmt: skip


def test_a_hinted_success_replaces_one_failure_and_the_failure_still_counts():
    cfg = config("hints.enabled=true", "hints.samples=2")
    engine = ScriptedEngine(lambda text: "\\boxed{7}$" if "h2" in text else "\\boxed{1}$")  # only tier 2 helps
    scaffold = HintScaffold(after=1, start=0, samples=2, prefix=" Hint: ")
    batch = collect(cfg, engine, ShuffledSampler(1, 0), task("7"), "math", SAMPLING, reward_mix(cfg, "math"),
                    step=1, scaffold=scaffold)  # fmt: skip
    assert [c.hint_level for c in batch.kept] == [2, 0, 0, 0] and batch.rewards.tolist() == [1.0, 0.0, 0.0, 0.0]
    assert batch.kept[0].example.prompt[-1]["content"] == "Q0 Hint: h2"  # trained on the prompt it was sampled from
    assert len(batch.sampled) == 5 and batch.sampled[4].hint_level == 0  # the replaced failure, kept for metrics
    assert batch.results[0].correct == (False,) * 4  # the sampler hears about the bare prompt only
    assert batch.metrics["hints/rollouts"] == 4.0 and batch.metrics["sampling/rollouts"] == 8.0  # 4 + 2 tiers x 2
    assert batch.metrics["hints/level_mean"] == 2.0


def test_xrpo_gives_the_uncertain_prompt_more_rollouts():
    cfg = config("rollout.prompts_per_step=2", "rollout.allocation={name: xrpo, initial: 2, explore: 0.0}")
    flips = itertools.cycle(["\\boxed{7}$", "\\boxed{1}$"])
    engine = ScriptedEngine(lambda text: next(flips) if "Q0" in text else "\\boxed{7}$")
    batch = collect(cfg, engine, ShuffledSampler(2, 0), task("7", "7"), "math", SAMPLING, reward_mix(cfg, "math"))
    by_prompt = {c.example.id: 0 for c in batch.kept}
    for c in batch.kept:
        by_prompt[c.example.id] += 1
    assert by_prompt == {"q0": 2 + 4, "q1": 2}  # the 4 left of the 2 x 4 budget all go to the uncertain one
    assert sorted(batch.sizes) == [2, 6] and len(batch.rewards) == 8
    assert batch.metrics["sampling/rollouts"] == 8.0
    assert batch.metrics["sampling/group_size_max"] == 6.0
    assert [len(r.correct) for r in batch.results] == [6, 2] or [len(r.correct) for r in batch.results] == [2, 6]
