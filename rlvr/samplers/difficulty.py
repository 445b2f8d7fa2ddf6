"""Online difficulty: samplers that track each prompt's pass rate and skip or favour prompts by it.

Both walk seeded epochs over the train split (:class:`ShuffledSampler`) for the prompts they have
not seen, so coverage stays that of ``uniform``; the difference is what they leave out.
"""

import random
from typing import Annotated

from pydantic import Field

from rlvr.samplers import SAMPLERS, PromptResult, ShuffledSampler
from rlvr.types import Example

Rate = Annotated[float, Field(ge=0, le=1)]


class PassRateCurriculum:
    """Skip prompts whose mean pass rate over their last ``window`` groups is <= ``low`` or >= ``high``."""

    def __init__(self, size: int, seed: int, window: int, low: float, high: float, retry_after: int) -> None:
        self.order = ShuffledSampler(size, seed)
        self.window, self.low, self.high, self.retry_after = window, low, high, retry_after
        self.history: dict[int, list[float]] = {}  # prompt -> its last `window` groups' pass rates
        self.last_seen: dict[int, int] = {}  # prompt -> the step it was last observed
        self.step = 0
        self.skipped = 0  # prompts passed over by the last next()

    def estimate(self, index: int) -> float | None:
        rates = self.history.get(index)
        return sum(rates) / len(rates) if rates else None

    def eligible(self, index: int) -> bool:
        rate = self.estimate(index)
        if rate is None or self.low < rate < self.high:
            return True
        upcoming = self.step + 1  # next() is called for the step after the last one observed
        return bool(self.retry_after) and upcoming - self.last_seen[index] >= self.retry_after

    def next(self, count: int) -> list[int]:
        picked: list[int] = []
        passed: list[int] = []
        while len(picked) < count and len(passed) < self.order.size:
            index = self.order.next(1)[0]
            (picked if self.eligible(index) else passed).append(index)
        if len(picked) < count:  # a whole epoch's worth is filtered out: the longest unseen come back
            passed.sort(key=lambda i: self.last_seen.get(i, -1))
            picked += passed[: count - len(picked)]
        self.skipped = len(passed)
        return picked

    def observe(self, results: list[PromptResult]) -> dict[str, float]:
        for r in results:
            if not r.correct:  # nothing sampled from the bare prompt: no evidence
                continue
            rates = self.history.setdefault(r.index, [])
            rates.append(r.pass_rate)
            del rates[: -self.window]
            self.last_seen[r.index] = r.step
            self.step = max(self.step, r.step)
        estimates = [sum(v) / len(v) for v in self.history.values()]
        tracked = max(len(estimates), 1)
        return {
            "sampler/skipped": float(self.skipped),
            "sampler/tracked": float(len(estimates)),
            "sampler/too_easy_frac": sum(e >= self.high for e in estimates) / tracked,
            "sampler/too_hard_frac": sum(e <= self.low for e in estimates) / tracked,
        }

    def state_dict(self) -> dict:
        return {"order": self.order.state_dict(), "history": self.history, "last_seen": self.last_seen,
                "step": self.step}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        self.order.load_state_dict(state["order"])
        self.history = {int(k): list(v) for k, v in state["history"].items()}
        self.last_seen = {int(k): v for k, v in state["last_seen"].items()}
        self.step = state["step"]


@SAMPLERS.register("pass_rate")
def pass_rate(
    train_set: list[Example],
    *,
    seed: int,
    window: Annotated[int, Field(ge=1)] = 2,
    low: Rate = 0.0,
    high: Rate = 1.0,
    retry_after: Annotated[int, Field(ge=0)] = 0,
) -> PassRateCurriculum:
    """Online difficulty filtering (Bae et al. 2025, "Online Difficulty Filtering for Reasoning
    Oriented Reinforcement Learning", arXiv 2504.03380; PRIME's filter, Cui et al. 2025, arXiv
    2502.01456, keeps prompts with accuracy in [0.2, 0.8]): a prompt whose mean pass rate over its
    last ``window`` groups is <= ``low`` (too hard) or >= ``high`` (too easy) is skipped when its turn
    comes. The defaults skip exactly the prompts whose groups last agreed (all right or all wrong),
    which carry no GRPO gradient. Unseen prompts are always taken.

    ``retry_after`` steps after its last observation a skipped prompt is eligible again (the policy
    has moved); 0 keeps it out for the run. When a whole epoch is filtered out, the prompts observed
    longest ago are taken, so the sampler never stalls. Limits: the filter acts before rollout, on
    past outcomes only; unlike DAPO's dynamic sampling it spends no rollouts on the prompts it skips,
    and unlike it, a prompt's first visit is never filtered.
    """
    return PassRateCurriculum(len(train_set), seed, window, low, high, retry_after)


class BetaPosteriors:
    """MoPPS: a Beta posterior on each prompt's success rate, updated from each observed group."""

    def __init__(self, size: int, seed: int, target: float, decay: float, prior: tuple[float, float], pool: int):
        self.order = ShuffledSampler(size, seed)
        self.rng = random.Random(f"mopps-{seed}")
        self.target, self.decay, self.prior, self.pool = target, decay, prior, pool
        self.posterior: dict[int, tuple[float, float]] = {}  # prompt -> (alpha, beta); absent: the prior
        self.last_pick: list[float] = []
        self.issued: set[int] = set()  # prompts given out since the last observe (no repeats within a step)

    def next(self, count: int) -> list[int]:
        size = self.order.size
        if self.pool:  # distinct candidates from seeded epochs, none already given out this step
            candidates: list[int] = []
            for _ in range(2 * size):
                if len(candidates) >= min(self.pool * count, size - len(self.issued)):
                    break
                index = self.order.next(1)[0]
                if index not in self.issued and index not in candidates:
                    candidates.append(index)
        else:
            candidates = [i for i in range(size) if i not in self.issued]
        draws = []
        for index in candidates:  # Thompson sampling: one draw per candidate, the nearest to the target win
            a, b = self.posterior.get(index, self.prior)
            draws.append((abs(self.rng.betavariate(a, b) - self.target), index))
        draws.sort()
        picked = [i for _, i in draws[:count]]
        while len(picked) < count:  # a train split smaller than a step: repeats, as uniform epochs would give
            picked.append(picked[len(picked) % max(len(draws), 1)] if draws else self.rng.randrange(size))
        self.issued.update(picked)
        self.last_pick = [self.mean(i) for i in picked]
        return picked

    def mean(self, index: int) -> float:
        a, b = self.posterior.get(index, self.prior)
        return a / (a + b)

    def observe(self, results: list[PromptResult]) -> dict[str, float]:
        a0, b0 = self.prior
        lam = self.decay
        self.issued = set()
        for r in results:
            a, b = self.posterior.get(r.index, self.prior)
            s, k = sum(r.correct), len(r.correct)
            self.posterior[r.index] = (
                beta_update(a, s, a0, lam),
                beta_update(b, k - s, b0, lam),
            )
        return {
            "sampler/tracked": float(len(self.posterior)),
            "sampler/picked_mean_rate": sum(self.last_pick) / max(len(self.last_pick), 1),
        }

    def state_dict(self) -> dict:
        return {"order": self.order.state_dict(), "rng": self.rng.getstate(), "posterior": self.posterior,
                "issued": sorted(self.issued)}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        self.order.load_state_dict(state["order"])
        self.rng.setstate(state["rng"])
        self.posterior = {int(k): tuple(v) for k, v in state["posterior"].items()}
        self.issued = set(state.get("issued", []))


def beta_update(count: float, observed: float, prior: float, decay: float) -> float:
    """MoPPS's streaming update of one Beta parameter: lambda * count + (1 - lambda) * prior + observed
    (lambda = 1: the exact Bayesian posterior; lambda < 1 forgets old outcomes as the policy moves)."""
    return decay * count + (1.0 - decay) * prior + observed


@SAMPLERS.register("mopps")
def mopps(
    train_set: list[Example],
    *,
    seed: int,
    target: Annotated[float, Field(gt=0, lt=1)] = 0.5,
    decay: Annotated[float, Field(gt=0, le=1)] = 1.0,
    prior: tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]] = (1.0, 1.0),
    pool: Annotated[int, Field(ge=0)] = 0,
) -> BetaPosteriors:
    """MoPPS, Model Predictive Prompt Selection (Qu et al. 2025, "Can Prompt Difficulty be Online
    Predicted for Accelerating RL Finetuning of Reasoning Models?", arXiv 2507.04632).

    Each prompt's success rate gamma has a Beta(alpha, beta) posterior, updated after each group of
    k rollouts with s correct (streaming, with decay lambda):

        alpha <- lambda alpha + (1 - lambda) alpha_0 + s,   beta <- lambda beta + (1 - lambda) beta_0 + k - s

    Each step, one gamma_hat ~ Beta(alpha, beta) is drawn per candidate prompt (Thompson sampling)
    and the ``count`` candidates with gamma_hat nearest ``target`` are taken; unseen prompts draw
    from the prior. ``pool``: candidates per step as a multiple of the prompts wanted, drawn by
    seeded epochs (the paper's pre-sampled candidate batch); 0 makes every train prompt a candidate.
    A prompt is given out at most once per step (dynamic sampling's later rounds draw from the rest).
    No extra rollouts are spent on prediction: the posteriors come from the training rollouts. The
    defaults (uniform prior, no decay) are this implementation's choice; the paper tunes lambda.
    """
    return BetaPosteriors(len(train_set), seed, target, decay, prior, pool)
