"""Configs saved by earlier rlvr versions, read as today's (for ``--resume`` and ``rlvr eval --model RUN_DIR``)."""

from typing import Any

from rlvr.config import COMPONENT_DEFAULTS


def upgrade_saved(raw: dict[str, Any]) -> dict[str, Any]:
    """A ``config.yaml`` written by rlvr before components declared their own keys, in today's form,
    with the same meaning: every flat ``algo.*`` key went to every function that declared it, so
    each moves into the components that declare it (and only those). Used on a run's saved config
    (``--resume``, ``rlvr eval --model RUN_DIR``); a hand-written recipe with old keys gets
    the one-line error of :data:`MOVED` instead."""
    from rlvr.algos.compose import KINDS, advantage_kind
    from rlvr.algos.entropy import ENTROPY_CONTROLLERS
    from rlvr.algos.losses import POLICY_LOSSES

    algo, critic, rollout = raw.get("algo") or {}, raw.get("critic") or {}, raw.get("rollout") or {}
    old = {k: algo.pop(k) for k in ("clip_low", "clip_high", "dual_clip_c", "cispo_clip_low", "cispo_clip_high",
                                     "std_eps", "pass_k", "entropy_rate") if k in algo}  # fmt: skip
    old |= {k: critic.pop(k) for k in ("gamma", "lam") if k in critic}
    if "packed_weights" in rollout:
        rollout.setdefault("onednn_weights", rollout.pop("packed_weights"))
    if not old:
        return raw
    old["eps"], old["rate"] = old.pop("std_eps", None), old.pop("entropy_rate", None)
    for field, registry in (
        ("policy_loss", POLICY_LOSSES),
        ("advantage", None),
        ("entropy_controller", ENTROPY_CONTROLLERS),
    ):
        spec = algo.get(field, COMPONENT_DEFAULTS[field])
        spec = {"name": spec} if isinstance(spec, str) else dict(spec)
        reg = registry or KINDS[advantage_kind(spec["name"])]
        declared = reg.hparams(spec["name"]) if spec["name"] in reg else {}
        spec |= {k: v for k, v in old.items() if k in declared and v is not None and k not in spec}
        algo[field] = spec
    raw["algo"], raw["critic"] = algo, critic
    return raw
