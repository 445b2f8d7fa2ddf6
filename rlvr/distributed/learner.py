"""The learner group: N ranks that take each optimizer step together (``distributed.learners``).

The driver process is rank 0: it keeps the whole :class:`rlvr.run_setup.Run` (the model the rollout
syncs from, the passes outside the update, checkpoints), so with ``learners: 1`` nothing changes.
Ranks 1..N-1 are Ray actors (:class:`LearnerRank`), each with the same policy, reference, optimizer and
schedule, built by :func:`rlvr.run_setup.learner_parts` and then loaded with rank 0's exact state.

Each optimizer step the rows are dealt in N consecutive shares; every rank cuts its share into its own
micro-batches and runs :func:`rlvr.learner.update.update_step` with a
:class:`rlvr.distributed.groups.GradientSync`, which sums the step's normalizers, gradients and metrics
over a Gloo group (NCCL on GPU is the same call on another group). The replicas start equal and take
equal steps, so they stay equal; the summed gradient is the one-process gradient of all the rows, so
an N-rank step equals the one-process step within float summation order.

Faults: a rank that dies (or a collective that outlasts ``distributed.timeout_s``) stops the run with
a one-line :class:`rlvr.errors.TrainingError` naming the rank; ``rlvr train --resume RUN`` continues from
the last checkpoint, which rank 0 writes in the one-process format (the replicas are equal).

``strategy: ddp`` replicates the weights; ``strategy: fsdp2`` shards the decoder layers' weights,
gradients and optimizer state over the ranks (:mod:`rlvr.distributed.sharding`): rank 0 then trains its
own sharded copy, after every optimizer step the ranks gather the new layers to rank 0
into the run's full policy, which the rollout, eval and checkpoints read; checkpoints gather the
optimizer state into the one-process format.

Limits: the critic, SFT stages and SFT+RL mixing run only in one process (refused at load).
"""

import ray

from rlvr.distributed.groups import GradientSync, gloo_group
from rlvr.errors import TrainingError, first_line


class LearnerRank:
    """One learner rank >= 1 (a Ray actor): its replica, and the update over its share of a step."""

    def __init__(self, config_yaml: str, rank: int, world: int, host: str, port: int, threads: int) -> None:
        from rlvr.distributed.cluster import worker_config
        from rlvr.run_setup import learner_parts

        self.config = worker_config(config_yaml, threads)
        self.model, self.ref_model, self.tokenizer, self.optimizer, self.scheduler = learner_parts(self.config)
        d = self.config.distributed
        self.sharded = d.strategy == "fsdp2"
        if self.sharded:
            from rlvr.distributed.sharding import world_group

            group = world_group(host, port, rank, world, d.timeout_s, next(self.model.parameters()).device)
        else:
            group = gloo_group(host, port, rank, world, d.timeout_s)
        self.sync = GradientSync(group, d.bucket_mb, sharded=self.sharded)

    def ready(self) -> bool:
        return True

    def load(self, model_state: dict, optimizer_state: dict, scheduler_state: dict) -> None:
        """Become rank 0's exact replica (DDP), or take this rank's shard of its state (FSDP2), once at start
        (a resumed run has loaded its checkpoint into rank 0 by then)."""
        if self.sharded:
            from rlvr.distributed.sharding import sharded_parts

            self.model, self.optimizer, self.scheduler = sharded_parts(
                self.config, self.model, model_state, optimizer_state, scheduler_state
            )
            return
        self.model.load_state_dict(model_state)
        self.optimizer.load_state_dict(optimizer_state)
        self.scheduler.load_state_dict(scheduler_state)

    def update(
        self, completions, per_token: dict, settings, max_grad_norm: float, step: int, step_scheduler: bool,
        padding_only: bool = False,
    ):  # fmt: skip
        """This rank's share of one optimizer step. ``padding_only`` (FSDP2, a rank without rows): the rows are
        another rank's, run to join the layers' collectives and weighted zero."""
        from rlvr.learner.settings import micro_batches
        from rlvr.learner.update import update_step

        micro = micro_batches(self, completions, per_token) if completions else []  # cut as rank 0 cuts its share
        metrics = update_step(
            self.model, self.ref_model, self.optimizer, self.scheduler, [] if padding_only else micro, settings,
            max_grad_norm, step, step_scheduler, sync=self.sync, padding=micro if padding_only else (),
        )  # fmt: skip
        if self.sharded:
            from rlvr.distributed.sharding import gather_into

            gather_into(self.model)  # rank 0 gathers the new layers into the run's policy
        return metrics

    def optimizer_state(self) -> None:
        """FSDP2: join rank 0's gather of the optimizer state for a checkpoint."""
        from rlvr.distributed.sharding import full_optimizer_state

        full_optimizer_state(self.optimizer)

    def model_state(self) -> dict:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}


class LearnerGroup:
    """Driver side: rank 0's sync and the handles of ranks 1..N-1."""

    def __init__(self, run, world: int) -> None:
        from rlvr.config import to_yaml
        from rlvr.distributed.cluster import node_ip
        from rlvr.distributed.groups import free_port

        d = run.config.distributed
        self.world, self.timeout_s = world, d.timeout_s
        host, port = node_ip(), free_port()
        remote = ray.remote(LearnerRank).options(
            num_cpus=d.learner_cpus, num_gpus=d.gpus_per_worker, max_restarts=0, max_concurrency=2
        )
        text = to_yaml(run.config)
        threads = run.config.train.threads or max(1, int(d.learner_cpus))  # the ranks compute at the same time
        self.ranks = [remote.remote(text, r, world, host, port, threads) for r in range(1, world)]
        # rank 0 joins here; the constructor returns once every rank has joined
        self.sharded = d.strategy == "fsdp2"
        self.local = None  # FSDP2: rank 0's (model, optimizer, scheduler) over its shards
        try:
            if self.sharded:
                from rlvr.distributed.sharding import world_group

                group = world_group(host, port, 0, world, d.timeout_s, next(run.model.parameters()).device)
            else:
                group = gloo_group(host, port, 0, world, d.timeout_s)
            self.sync = GradientSync(group, d.bucket_mb, sharded=self.sharded)
            self._get([r.ready.remote() for r in self.ranks], "start")
            self.load(run)
        except BaseException:
            self.close()  # no rank left running, no default group left for the next run in this process
            raise

    def load(self, run) -> None:
        """Ranks 1..N-1 take rank 0's weights, optimizer and schedule state (object store, one copy);
        under FSDP2 every rank, rank 0 too, keeps its shard of them."""
        model_state = {k: v.detach().cpu() for k, v in run.model.state_dict().items()}
        optimizer_state, scheduler_state = run.optimizer.state_dict(), run.scheduler.state_dict()
        model, optimizer, scheduler = ray.put(model_state), ray.put(optimizer_state), ray.put(scheduler_state)
        futures = [r.load.remote(model, optimizer, scheduler) for r in self.ranks]
        if self.sharded:
            from rlvr.distributed.sharding import replica_of, sharded_parts

            self.local = sharded_parts(run.config, replica_of(run.model), model_state, optimizer_state, scheduler_state)
            run.optimizer.state.clear()  # the full copy is never stepped; checkpoints gather the shards instead
            run.state["optimizer"] = GatheredOptimizer(self)
        self._get(futures, "load the weights")

    def update(self, run, completions, per_token: dict, settings, step: int, step_scheduler: bool = True):
        """One optimizer step over ``completions`` with all ranks; returns rank 0's (summed) metrics."""
        from rlvr.learner.settings import micro_batches
        from rlvr.learner.update import update_step
        from rlvr.trainer import share

        rows = list(range(len(completions)))
        shares = [share(rows, r, self.world) for r in range(self.world)]
        max_norm = run.config.optim.max_grad_norm
        futures = []
        for rank, actor in zip(range(1, self.world), self.ranks, strict=True):
            mine = shares[rank]
            padding_only = self.sharded and not mine  # see padding below
            mine = [0] if padding_only else mine
            part = {k: v[mine] for k, v in per_token.items()}
            futures.append(
                actor.update.remote(
                    [completions[i] for i in mine], part, settings, max_norm, step, step_scheduler, padding_only
                )
            )
        own = shares[0]
        micro = (
            micro_batches(run, [completions[i] for i in own], {k: v[own] for k, v in per_token.items()}) if own else []
        )
        padding = []
        if self.sharded and not own:  # every FSDP2 rank runs the layers: a rank without rows runs others', weighted 0
            padding = micro_batches(run, completions[:1], {k: v[:1] for k, v in per_token.items()})
        model, optimizer, scheduler = self.local or (run.model, run.optimizer, run.scheduler)
        try:
            metrics = update_step(
                model, run.ref_model, optimizer, scheduler, micro, settings, max_norm,
                step, step_scheduler, sync=self.sync, padding=padding,
            )  # fmt: skip
            if self.sharded:
                from rlvr.distributed.sharding import gather_into

                gather_into(model, run.model)  # the run's full policy: rollout, eval, checkpoints
                run.scheduler.load_state_dict(scheduler.state_dict())
        except TrainingError:  # a non-finite gradient norm: every rank saw the same sum and stops alike
            raise
        except Exception as err:  # rank 0 failed, or a collective timed out or lost a peer
            ray.wait(futures, num_returns=len(futures), timeout=5)  # a rank that died first has answered by now
            rank = failed_rank(futures)
            self.close()  # the group is broken: no rank may stay waiting in a collective
            culprit = f"learner rank {rank}" if rank != "?" else "learner rank 0 (the driver)"
            raise TrainingError(
                f"step {step}: {culprit} failed ({first_line(err)}); the run stopped, "
                "resume it from its last checkpoint with rlvr train --resume RUN_DIR"
            ) from None
        self._get(futures, f"step {step}")
        return metrics

    def model_states(self) -> list[dict]:
        """DDP: the replicas of ranks 1..N-1 (tests check they stay equal to rank 0's)."""
        return self._get([r.model_state.remote() for r in self.ranks], "read the weights")

    def optimizer_state(self) -> dict:
        """FSDP2: the optimizer state gathered from the shards, in the one-process format."""
        from rlvr.distributed.sharding import full_optimizer_state

        futures = [r.optimizer_state.remote() for r in self.ranks]
        try:
            state = full_optimizer_state(self.local[1])
        except Exception as err:  # a rank died, or the gather outlasted distributed.timeout_s
            self.close()
            raise TrainingError(
                f"learner rank {failed_rank(futures)} failed while gathering the optimizer state for a checkpoint "
                f"({first_line(err)}); resume from the last checkpoint with rlvr train --resume RUN_DIR"
            ) from None
        self._get(futures, "gather the optimizer state")
        return state

    def _get(self, futures, what: str):
        try:
            return ray.get(futures, timeout=self.timeout_s)
        except ray.exceptions.GetTimeoutError:
            raise TrainingError(f"learner group: {what} outlasted distributed.timeout_s={self.timeout_s}") from None
        except ray.exceptions.RayError as err:
            rank = failed_rank(futures)
            raise TrainingError(
                f"learner rank {rank} failed during {what}: {first_line(err)}; the run stopped, "
                "resume it from its last checkpoint with rlvr train --resume RUN_DIR"
            ) from None

    def close(self) -> None:
        for r in self.ranks:
            ray.kill(r)
        self.ranks = []
        if self.sharded:
            from rlvr.distributed.sharding import close_world

            close_world()


class GatheredOptimizer:
    """FSDP2: stands for the run's optimizer in its checkpointed state (``run.state["optimizer"]``): saving
    gathers the shards into the one-process format. Loading happens before the group starts (resume)."""

    def __init__(self, group: LearnerGroup) -> None:
        self.group = group

    def state_dict(self) -> dict:
        return self.group.optimizer_state()

    def load_state_dict(self, state: dict) -> None:
        raise RuntimeError("an FSDP2 run loads its optimizer state before its learner group starts")


def failed_rank(futures) -> int | str:
    """The rank (1-based among the actors) whose finished call raised; "?" if none has finished failing."""
    ready, _ = ray.wait(list(futures), num_returns=len(futures), timeout=0)
    for i, future in enumerate(futures):
        if future in ready:
            try:
                ray.get(future)
            except ray.exceptions.RayError:
                return i + 1
    return "?"
