"""The ``distributed`` config section: where a run's processes go (rlvr.distributed, docs/distributed.md).

``backend: none`` (the default) is one process: nothing here is read and Ray is never imported.
``backend: ray`` places the learner's other ranks and the rollout workers as Ray actors, on an
existing cluster (``address``) or on a local one rlvr starts. :func:`check_distributed` refuses, with the
key named, what this version cannot place yet.
"""

from typing import Literal

from pydantic import Field

from rlvr.config_base import Section


class DistributedConfig(Section):
    backend: Literal["none", "ray"] = "none"
    address: str | None = None  # an existing cluster ("auto", or "host:port" of `ray start --head`); None: local
    num_cpus: int | None = Field(None, ge=1)  # CPUs of the local cluster rlvr starts (default: all cores)
    learners: int = Field(1, ge=1)  # learner ranks under torch.distributed (the driver is rank 0)
    # ddp: replicated weights, gradients summed over ranks (rlvr.distributed.learner); fsdp2: the decoder
    # layers' weights, gradients and optimizer state sharded over the ranks (rlvr.distributed.sharding)
    strategy: Literal["ddp", "fsdp2"] = "ddp"
    learner_cpus: float = Field(1.0, gt=0)  # Ray CPUs reserved per extra learner rank
    rollout_workers: int = Field(1, ge=0)  # Ray actors that generate; 0: the rollout runs in the driver
    worker_cpus: float = Field(1.0, gt=0)  # Ray CPUs reserved per rollout worker
    worker_threads: int = Field(0, ge=0)  # torch threads per rollout worker; 0: train.threads, else the driver's
    gpus_per_worker: float = Field(0.0, ge=0)  # Ray GPUs per rollout worker and learner rank (0: CPU)
    transport: Literal["object_store", "broadcast"] = "object_store"  # learner -> rollout weights
    bucket_mb: float = Field(64.0, gt=0)  # weight and gradient messages are cut into buckets of this size
    timeout_s: float = Field(600.0, gt=0)  # every remote call and collective
    max_restarts: int = Field(3, ge=0)  # rollout workers replaced per run (reward tasks rerun per call) before it stops
    reward_workers: int = Field(0, ge=0)  # Ray tasks that score a step's groups (reward_pool.py); 0: in the driver
    reward_cpus: float = Field(1.0, gt=0)  # Ray CPUs per reward task
    max_logprob_mismatch: float | None = Field(None, gt=0)  # stop when rollout and learner log-probs differ more
    max_off_policy_steps: int = Field(0, ge=0, le=1)  # 1: step k+1 generates while step k trains (pipeline.py)


def check_distributed(config) -> None:
    """What the learner group cannot do yet: each refused with the key that asks for it."""
    d = config.distributed
    if d.backend == "none":
        for key in ("learners", "rollout_workers", "max_off_policy_steps", "reward_workers"):
            if key in d.model_fields_set and getattr(d, key) != DistributedConfig.model_fields[key].default:
                raise ValueError(f"distributed.{key} needs distributed.backend=ray")
        return
    if d.max_off_policy_steps:
        needs = {
            "distributed.rollout_workers >= 1 (the in-process engine shares the weights the update writes)": (
                d.rollout_workers == 0
            ),
            "algo.tis_cap (the truncated importance weight against the rollout policy)": config.algo.tis_cap is None,
            "no stages (one RL stage)": bool(config.stages),
            "distributed.transport=object_store (a replaced worker loads the last sent snapshot)": (
                d.transport != "object_store"
            ),
            "no distributed.max_logprob_mismatch (the mismatch includes one step of policy change)": (
                d.max_logprob_mismatch is not None
            ),
        }
        missing = [need for need, lacking in needs.items() if lacking]
        if missing:
            raise ValueError(f"distributed.max_off_policy_steps=1 needs {'; '.join(missing)}")
    if d.strategy == "fsdp2":
        if d.learners < 2:
            raise ValueError("distributed.strategy=fsdp2 shards over learner ranks: it needs distributed.learners >= 2")
        for key, on in (
            ("model.lora_rank", config.model.lora_rank),
            ("model.gradient_checkpointing", config.model.gradient_checkpointing),
        ):
            if on:
                raise ValueError(f"distributed.strategy=fsdp2 does not take {key} yet; use distributed.strategy=ddp")
    if d.learners > 1:
        blockers = {
            "critic.model": config.critic.model is not None,
            "stages": bool(config.stages),
            "sft (demonstrations mixed into RL)": bool(config.sft.mixes),
        }
        asked = [key for key, on in blockers.items() if on]
        if asked:
            raise ValueError(
                f"distributed.learners={d.learners}: {', '.join(asked)} is not sharded over learner ranks yet; "
                "use distributed.learners=1"
            )
