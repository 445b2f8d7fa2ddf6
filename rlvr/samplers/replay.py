"""ReMix-style off-policy replay: recent groups trained on again, corrected for the policy that made them.

Liang et al. 2025, "Squeeze the Soaked Sponge: Efficient Off-policy Reinforcement Finetuning for Large
Language Model" (ReMix), arXiv 2507.06892. Each step trains on its fresh groups plus up to
``replay.groups`` groups from the last ``replay.max_staleness`` steps, each replayed at most
``replay.reuse`` times: more updates per rollout generated (ReMix's update-to-data ratio > 1).

The correction, ReMix's mix-policy proximal policy gradient: a replayed completion keeps the
log-probs of the policy that sampled it (``Completion.logprobs``, ``policy_version`` its weights'
step), so the clipped ratio pi_theta / pi_behaviour is the importance weight against that policy and
the clip is the trust region around it. With ``algo.tis_cap`` set, the trust region is the current
policy instead (its log-probs are recomputed before the update) and the truncated weight
min(pi_old / pi_behaviour, cap) corrects for the generating policy. ``replay.until_step`` is ReMix's
policy reincarnation: after that step the run is on-policy again. Only groups whose rewards disagree
are stored (the others carry no advantage). Group advantages are recomputed from the stored rewards.

Limits: ReMix's KL-Convex constraint is not implemented (``algo.kl_coef`` to the reference applies to
replayed rows as to fresh ones); ``train/logprob_mismatch`` includes the replayed rows (their
mismatch is their staleness); with ``algo.kl_in_reward`` the sequence KL of a replayed row is that
of its generating policy (the stored log-probs) against the reference, not the current policy's.
"""

from dataclasses import dataclass

import torch

from rlvr.algos.advantages import AGREE_TOL
from rlvr.types import Completion


@dataclass
class StoredGroup:
    completions: list[Completion]
    rewards: list[float]
    step: int  # the step that generated it
    uses: int = 0


class ReplayBuffer:
    def __init__(self, groups: int, capacity: int, reuse: int, max_staleness: int, until_step: int | None) -> None:
        self.groups, self.capacity, self.reuse = groups, capacity, reuse
        self.max_staleness, self.until_step = max_staleness, until_step
        self.stored: list[StoredGroup] = []

    def mix(self, batch, step: int) -> dict[str, float]:
        """Append replayed groups to ``batch`` (kept, rewards, sizes) and store its fresh groups."""
        self.stored = [g for g in self.stored if step - g.step <= self.max_staleness and g.uses < self.reuse]
        active = self.until_step is None or step <= self.until_step
        drawn = sorted(self.stored, key=lambda g: (-g.step, g.uses))[: self.groups] if active else []
        for g in drawn:
            g.uses += 1
        fresh = split(batch.kept, batch.rewards.tolist(), batch.sizes)
        for completions, rewards in fresh:
            if max(rewards) - min(rewards) > AGREE_TOL:
                self.stored.append(StoredGroup(completions, rewards, step))
        self.stored = self.stored[-self.capacity :]
        if drawn:
            batch.kept = batch.kept + [c for g in drawn for c in g.completions]
            batch.rewards = torch.cat([batch.rewards, torch.tensor([r for g in drawn for r in g.rewards])])
            batch.sizes = batch.sizes + [len(g.completions) for g in drawn]
        stale = [step - 1 - c.policy_version for g in drawn for c in g.completions]
        return {
            "replay/groups": float(len(drawn)),
            "replay/staleness_mean": sum(stale) / len(stale) if stale else 0.0,
            "replay/buffer": float(len(self.stored)),
        }

    def state_dict(self) -> dict:
        return {"stored": [(g.completions, g.rewards, g.step, g.uses) for g in self.stored]}

    def load_state_dict(self, state: dict) -> None:
        self.stored = [StoredGroup(list(c), list(r), s, u) for c, r, s, u in state["stored"]]


def split(completions: list, rewards: list[float], sizes: list[int]) -> list[tuple[list, list[float]]]:
    """Consecutive groups of ``sizes``: [(completions, rewards)]."""
    out, start = [], 0
    for size in sizes:
        out.append((completions[start : start + size], rewards[start : start + size]))
        start += size
    return out
