"""The rollout pool: M Ray actors that generate, behind the :class:`rlvr.rollout.RolloutEngine` protocol.

Each :class:`RolloutWorker` holds its own copy of the policy and any local engine (``rollout.engine``:
``fast`` or ``hf``) over it. :class:`RolloutPool` is the driver's engine: ``continue_ids`` deals the rows
in M contiguous near-equal shares (rows of one prompt stay together where the shares allow, so their
prompt is prefilled once), each with its placement-free seed (:mod:`rlvr.rollout.seeds`), and gathers
the samples in order: 1 or M workers sample the same tokens. ``update_weights`` sends the learner's
weights through the transport (:mod:`rlvr.distributed.transport`) when their version changed.

Faults: a worker that dies or outlasts ``distributed.timeout_s`` mid-call is killed and replaced, the
replacement gets the current weights, and its share is generated again with the same seeds, so the step
ends as an undisturbed one would; after ``distributed.max_restarts`` replacements the run stops.
"""

import time
from dataclasses import replace

import ray
import torch

from rlvr.errors import TrainingError, first_line
from rlvr.rollout import SamplingParams
from rlvr.rollout.seeds import derive_seed, row_seeds


class RolloutWorker:
    """One rollout worker (a Ray actor): a policy copy and a local engine over it."""

    def __init__(self, config_yaml: str, threads: int) -> None:
        from rlvr.distributed.cluster import worker_config
        from rlvr.models import add_lora, load_model, resolve_device
        from rlvr.precision import resolve_precision
        from rlvr.rollout import make_engine

        cfg = worker_config(config_yaml, threads)
        model, tokenizer = load_model(cfg.model.name, cfg.model.dtype, seed=cfg.train.seed)
        device = resolve_device(cfg.train.device)
        model.to(device)
        if cfg.model.lora_rank:  # the same module tree as the learner's, so its state dict loads as it is
            m = cfg.model
            model = add_lora(model, m.lora_rank, m.lora_alpha, m.lora_dropout, m.lora_target_modules)
        self.model = model.eval().requires_grad_(False)
        train = resolve_precision(cfg.train.precision, device)
        self.engine = make_engine(
            cfg.rollout.engine, model, tokenizer, cfg.rollout.batch_size, cfg.rollout.onednn_weights,
            resolve_precision(cfg.rollout.precision, device, train=train), cfg.train.fp32_logits,
        )  # fmt: skip
        self.version = -1
        self.group = None
        self.crash_next = False

    def continue_ids(self, prefixes, sampling, seeds):
        if self.crash_next:  # fault injection (tests): die mid-call, as a killed node would
            import os

            os._exit(1)
        return self.version, self.engine.continue_ids(prefixes, sampling, seeds)

    def load_weights(self, arrays: list, version: int) -> None:
        from rlvr.distributed.transport import load_flat

        load_flat(self.model, arrays)
        self.version = version

    def join_broadcast(self, host: str, port: int, rank: int, world: int, timeout_s: float) -> None:
        from rlvr.distributed.groups import gloo_group

        self.group = gloo_group(host, port, rank, world, timeout_s)

    def receive_broadcast(self, version: int, bucket_bytes: int) -> None:
        from rlvr.distributed.transport import receive_into

        receive_into(self.group, self.model, bucket_bytes)
        self.version = version

    def model_state(self) -> dict:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def crash_on_next_call(self) -> None:
        self.crash_next = True

    def pid(self) -> int:
        import os

        return os.getpid()


class RolloutPool:
    """The driver's rollout engine over ``distributed.rollout_workers`` Ray actors."""

    def __init__(self, config, tokenizer, precision: str) -> None:
        from rlvr.config import to_yaml
        from rlvr.distributed.transport import TRANSPORTS

        d = config.distributed
        self.tokenizer = tokenizer
        self.precision = precision  # what the workers compute in (the driver's precision line)
        self.timeout_s, self.restarts_left = d.timeout_s, d.max_restarts
        # the driver waits while the workers generate: by default a worker uses the driver's thread count
        # (Ray would give an actor of worker_cpus=1 one thread, OMP_NUM_THREADS=1)
        self.threads = d.worker_threads or config.train.threads or torch.get_num_threads()
        self._yaml = to_yaml(config)
        self._remote = ray.remote(RolloutWorker).options(
            num_cpus=d.worker_cpus, num_gpus=d.gpus_per_worker, max_restarts=0
        )
        self.workers = [self._spawn() for _ in range(d.rollout_workers)]
        self.transport = TRANSPORTS[d.transport](d.timeout_s, d.bucket_mb)
        self.version: int | None = None  # the weights' version the workers hold (None: not synced yet)
        self.model = None  # the last model synced: a replacement worker is loaded from it
        self.last_sync: dict[str, float] = {}
        self.last_stats: dict[str, int] = {}
        self.restarts = 0
        self.unseeded_calls = 0

    def _spawn(self):
        return self._remote.remote(self._yaml, self.threads)

    def update_weights(self, model, version: int | None = None) -> None:
        """Send ``model``'s weights to every worker, unless they already hold ``version``."""
        if version is not None and version == self.version:
            return
        self.model, self.version = model, (version if version is not None else (self.version or 0) + 1)
        try:
            seconds, nbytes = self.transport.send(self.workers, model, self.version)
        except (ray.exceptions.RayError, RuntimeError) as err:  # a worker died between calls: replace, resend once
            dead = [w for w, worker in enumerate(self.workers) if not _alive(worker)]
            if not dead:
                raise TrainingError(f"weight sync to the rollout workers failed: {first_line(err)}") from None
            for w in dead:
                self._replace(w, err, load=False)
            try:
                seconds, nbytes = self.transport.send(self.workers, model, self.version)
            except (ray.exceptions.RayError, RuntimeError) as again:
                raise TrainingError(f"weight sync to the rollout workers failed: {first_line(again)}") from None
        self.last_sync = {"distributed/sync_s": seconds, "distributed/sync_mb": nbytes / 2**20}

    def continue_ids(self, prefixes: list[list[int]], sampling: SamplingParams, seeds: list[int] | None = None):
        if self.version is None:
            raise TrainingError("rollout pool: generation before the first weight sync (update_weights)")
        if sampling.seed is None and seeds is None:  # every call its own streams, still placement-free
            self.unseeded_calls += 1
            sampling = replace(sampling, seed=derive_seed("rollout-pool", self.unseeded_calls))
        seeds = row_seeds(prefixes, sampling.seed, seeds)
        first = first_row_of_prefix(prefixes)
        order = sorted(range(len(prefixes)), key=lambda i: first[i])  # rows grouped by prompt (a stable sort)
        shares = [order[w * len(order) // len(self.workers) : (w + 1) * len(order) // len(self.workers)]
                  for w in range(len(self.workers))]  # fmt: skip
        samples: list = [None] * len(prefixes)
        pending = {w: self._submit(w, rows, prefixes, sampling, seeds) for w, rows in enumerate(shares) if rows}
        while pending:
            w, future = next(iter(pending.items()))
            try:
                version, out = ray.get(future, timeout=self.timeout_s)
            except (
                ray.exceptions.RayActorError,
                ray.exceptions.GetTimeoutError,
                ray.exceptions.WorkerCrashedError,
            ) as err:
                self._replace(w, err)
                pending[w] = self._submit(w, shares[w], prefixes, sampling, seeds)
                continue
            except ray.exceptions.RayTaskError as err:  # the worker raised (it lives): one line, the run stops
                raise TrainingError(f"rollout worker {w}: {first_line(err.cause or err)}") from None
            if version != self.version:
                raise TrainingError(
                    f"rollout worker {w} sampled with weights v{version}, the learner's are v{self.version}"
                )
            for i, sample in zip(shares[w], out, strict=True):
                samples[i] = sample
            del pending[w]
        return samples

    def _submit(self, w: int, rows: list[int], prefixes, sampling, seeds):
        return self.workers[w].continue_ids.remote([prefixes[i] for i in rows], sampling, [seeds[i] for i in rows])

    def _replace(self, w: int, err: Exception, load: bool = True) -> None:
        """Kill worker ``w`` (dead or hung), start another; ``load``: give it the weights last sent (the
        object-store snapshot, else the synced model: unchanged since, without pipelining)."""
        if self.restarts_left == 0:
            raise TrainingError(f"rollout worker {w} failed ({first_line(err)}) and distributed.max_restarts is spent")
        self.restarts_left -= 1
        self.restarts += 1
        ray.kill(self.workers[w], no_restart=True)
        self.workers[w] = self._spawn()
        if not load:
            return
        self.transport.reset(self.workers)
        started = time.perf_counter()
        snapshot = getattr(self.transport, "last", None)
        if snapshot is not None:
            ray.get(self.workers[w].load_weights.remote(snapshot, self.version), timeout=self.timeout_s)
        else:
            from rlvr.distributed.transport import ObjectStoreTransport

            ObjectStoreTransport(self.timeout_s, 0).send([self.workers[w]], self.model, self.version)
        self.last_sync["distributed/replace_s"] = time.perf_counter() - started

    def close(self) -> None:
        for worker in self.workers:
            ray.kill(worker, no_restart=True)
        self.workers = []


def _alive(worker) -> bool:
    try:
        ray.get(worker.pid.remote(), timeout=30)
        return True
    except ray.exceptions.RayError:
        return False


def first_row_of_prefix(prefixes: list[list[int]]) -> list[int]:
    """For each row, the index of the first row with the same prefix (sorting by it groups a prompt's rows)."""
    first: dict[tuple[int, ...], int] = {}
    return [first.setdefault(tuple(p), i) for i, p in enumerate(prefixes)]
