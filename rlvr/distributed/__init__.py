"""Scale-out on Ray and torch.distributed (``distributed.backend: ray``; docs/distributed.md).

Roles, as in verl, OpenRLHF and SkyRL:

- the *driver* is ``rlvr train`` itself: sampler, step loop, rewards, metrics, checkpoints, and learner
  rank 0 (:mod:`rlvr.trainer` runs unchanged);
- the *learner group* (:mod:`rlvr.distributed.learner`): ``distributed.learners`` ranks summing each
  step's gradients over a torch.distributed group;
- the *rollout pool* (:mod:`rlvr.distributed.rollout_pool`): ``distributed.rollout_workers`` Ray actors
  behind the rollout-engine protocol, synced through a transport (:mod:`rlvr.distributed.transport`);
- the *reward pool* (:mod:`rlvr.distributed.reward_pool`): with ``distributed.reward_workers``, a step's
  scoring as Ray tasks over runs of whole groups.

Tool calls run where the rollout runs (in a thread pool with timeouts, ``tools.workers``). With
``backend: none`` this package is never imported.
"""

from dataclasses import dataclass


@dataclass
class Placement:
    """What :func:`place` started, for :func:`release`."""

    started_ray: bool
    pool: object | None = None
    learners: object | None = None
    rewards: object | None = None  # a RewardPool: the step's scoring as Ray tasks


def place(run) -> Placement:
    """Connect to (or start) the cluster, check it can hold the run, start the learner ranks and the
    rollout workers, and put the pool in place of the run's engine."""
    from rlvr.distributed.cluster import connect, require

    d = run.config.distributed
    placement = Placement(connect(d))
    try:
        require(d)
        if d.learners > 1:
            from rlvr.distributed.learner import LearnerGroup

            placement.learners = LearnerGroup(run, d.learners)
        if d.rollout_workers:
            from rlvr.distributed.rollout_pool import RolloutPool

            placement.pool = RolloutPool(run.config, run.tokenizer, getattr(run.engine, "precision", "fp32"))
            run.engine = placement.pool
        if d.reward_workers:
            from rlvr.distributed.reward_pool import RewardPool

            placement.rewards = RewardPool(d, run.config.plugins)
    except BaseException:
        release(placement)
        raise
    return placement


def release(placement: Placement | None) -> None:
    """Stop the actors this run started, and Ray when the run started it."""
    if placement is None:
        return
    from rlvr.distributed.cluster import disconnect

    for part in (placement.pool, placement.learners):
        if part is not None:
            part.close()
    disconnect(placement.started_ray)
    placement.started_ray = False
