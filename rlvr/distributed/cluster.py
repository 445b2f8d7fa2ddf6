"""Ray, for placing processes: connect to a cluster or start a local one, and check its resources
before anything starts (``distributed.address``, ``num_cpus``; docs/distributed.md).

Ray is imported only here and in the modules that use it, and only with ``distributed.backend: ray``;
it is the ``distributed`` extra (``pip install 'rlvr[distributed]'``).
"""

import logging
import os

from rlvr.errors import ConfigError


def import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "distributed.backend=ray needs Ray: pip install 'rlvr[distributed]' (or pip install ray)"
        ) from None
    return ray


def connect(d) -> bool:
    """Join ``d.address``'s cluster, or start a local one of ``d.num_cpus`` CPUs; True when this call
    started Ray (then :func:`disconnect` stops it at the end of the run)."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    quiet = {"logging_level": logging.ERROR, "log_to_driver": False, "configure_logging": True}
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # no FutureWarning from a CPU-only actor
    if d.address:
        try:
            ray.init(address=d.address, **quiet)
        except ConnectionError as err:
            raise ConfigError(f"distributed.address={d.address}: no Ray cluster there ({err})") from None
    else:
        ray.init(num_cpus=d.num_cpus or os.cpu_count(), include_dashboard=False, **quiet)
    return True


def disconnect(started: bool) -> None:
    if started:
        import_ray().shutdown()


def require(d) -> None:
    """Refuse a placement the cluster cannot hold, naming what is missing, before any actor starts."""
    ray = import_ray()
    have = ray.cluster_resources()
    extra = d.learners - 1
    need = {
        # a reward task needs its CPUs free beside the actors, or it would wait for ever
        "CPU": extra * d.learner_cpus + d.rollout_workers * d.worker_cpus + (d.reward_cpus if d.reward_workers else 0),
        "GPU": (extra + d.rollout_workers) * d.gpus_per_worker,
    }
    short = [f"{need[k]:g} {k} (the cluster has {have.get(k, 0):g})" for k in need if need[k] > have.get(k, 0.0)]
    if short:
        raise ConfigError(
            f"distributed: {d.learners - 1} extra learner rank(s), {d.rollout_workers} rollout worker(s)"
            f"{' and reward tasks' if d.reward_workers else ''} need {' and '.join(short)}; lower "
            "distributed.learner_cpus / worker_cpus / rollout_workers / reward_cpus or add nodes"
        )


def node_ip() -> str:
    return import_ray().util.get_node_ip_address()


def worker_config(config_yaml: str, threads: int):
    """In an actor: the driver's resolved config (schema-checked; the registries were checked by the
    driver, and plugins registered there need not exist here) and the torch thread count."""
    import torch
    import yaml

    from rlvr.config import RunConfig

    if threads:
        torch.set_num_threads(threads)
    return RunConfig.model_validate(yaml.safe_load(config_yaml))
