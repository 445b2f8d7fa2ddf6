"""What the adaptive-sampling parts cost the driver per step, without any model: ``python -m rlvr.bench.bookkeeping``.

Times each sampler's ``next`` + ``observe``, the XRPO allocation and the replay buffer's ``mix`` on
a train split of ``--prompts`` examples, ``--steps`` steps of 4 prompts x 8 rollouts (the default
recipe's shape), and prints milliseconds per step. Generation and scoring are not included: a ragged
allocation's extra generation rounds show in ``time/rollout`` of a real run (``rlvr bench --variant
rollout.allocation=xrpo``).
"""

import argparse
import random
import time
from types import SimpleNamespace

import torch

from rlvr.samplers import PromptResult, make_sampler
from rlvr.samplers.allocation import ALLOCATIONS
from rlvr.samplers.replay import ReplayBuffer
from rlvr.types import Completion, Example

SAMPLER_SPECS = {
    "uniform": {},
    "pass_rate": {},
    "mopps (all prompts as candidates)": {},
    "mopps (pool 4)": {"pool": 4},
    "category_bandit": {},
}


def train_split(size: int) -> list[Example]:
    prompt = [{"role": "user", "content": "q"}]
    return [Example(f"p{i}", prompt, "1", {"difficulty": "abc"[i % 3]}) for i in range(size)]


def per_step_ms(run, steps: int) -> float:
    started = time.perf_counter()
    for step in range(1, steps + 1):
        run(step)
    return 1000 * (time.perf_counter() - started) / steps


def measure(prompts: int, steps: int, group: int = 8, per_step: int = 4) -> dict[str, float]:
    rng = random.Random(0)
    train = train_split(prompts)
    out: dict[str, float] = {}
    for label, params in SAMPLER_SPECS.items():
        sampler = make_sampler(train, label.split()[0], params, seed=0)

        def step_of(step, sampler=sampler):
            picked = sampler.next(per_step)
            outcomes = [tuple(rng.random() < 0.4 for _ in range(group)) for _ in picked]
            results = [PromptResult(i, step, tuple(map(float, o)), o) for i, o in zip(picked, outcomes, strict=True)]
            sampler.observe(results)

        out[f"sampler {label}"] = per_step_ms(step_of, steps)
    xrpo = ALLOCATIONS.bind("xrpo", {})

    def allocate(step):
        outcomes = [[float(rng.random() < 0.4) for _ in range(4)] for _ in range(per_step)]
        xrpo(outcomes, per_step * group - 4 * per_step, total=per_step * group)

    out["allocation xrpo (one round)"] = per_step_ms(allocate, steps)
    buffer = ReplayBuffer(groups=2, capacity=64, reuse=1, max_staleness=4, until_step=None)
    example = train[0]

    def replay(step):
        kept = [Completion(example, "x", [1], [2] * 48, [-1.0] * 48, [1] * 48, "stop") for _ in range(per_step * group)]
        rewards = torch.tensor([float(rng.random() < 0.5) for _ in kept])
        buffer.mix(SimpleNamespace(kept=kept, rewards=rewards, sizes=[group] * per_step), step)

    out["replay mix (2 groups)"] = per_step_ms(replay, steps)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m rlvr.bench.bookkeeping", description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=2000, help="train split size (default 2000)")
    parser.add_argument("--steps", type=int, default=200, help="steps timed per part (default 200)")
    args = parser.parse_args(argv)
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"driver bookkeeping per step, {args.prompts} train prompts, 4 x 8 rollouts")
    table.add_column("part")
    table.add_column("ms / step", justify="right")
    for part, ms in measure(args.prompts, args.steps).items():
        table.add_row(part, f"{ms:.3f}")
    Console().print(table)


if __name__ == "__main__":
    main()
