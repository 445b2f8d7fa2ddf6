"""The loss's registered parts, looked up once per run with their hyper-parameters bound.

``algo.advantage`` names an estimator of either kind: a group estimator over [B, G] rewards
(:data:`rlvr.algos.advantages.ADVANTAGES`) or a token-level one that needs a value model
(:data:`rlvr.algos.value.TOKEN_ADVANTAGES`). The trainer and the config ask :func:`advantage_kind`
which, never the name.
"""

from collections.abc import Callable
from dataclasses import dataclass
from difflib import get_close_matches

from rlvr.algos.advantages import ADVANTAGES
from rlvr.algos.aggregation import AGGREGATIONS
from rlvr.algos.entropy import ENTROPY_CONTROLLERS
from rlvr.algos.kl import KL_ESTIMATORS
from rlvr.algos.losses import POLICY_LOSSES
from rlvr.algos.value import TOKEN_ADVANTAGES
from rlvr.errors import ConfigError
from rlvr.registry import Registry

KINDS: dict[str, Registry] = {"group": ADVANTAGES, "token": TOKEN_ADVANTAGES}


def advantage_kind(name: str) -> str:
    """ "group" or "token": which registry holds the advantage estimator ``name``."""
    for kind, registry in KINDS.items():
        if name in registry:
            return kind
    names = [n for registry in KINDS.values() for n in registry.names()]
    close = get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    token = ", ".join(f"{n} (with critic.model)" for n in TOKEN_ADVANTAGES.names())
    raise ConfigError(f"unknown advantage estimator {name!r}.{hint} Valid: {', '.join(ADVANTAGES.names())}, {token}")


@dataclass(frozen=True)
class Algorithm:
    """Each part a bound function: the caller passes only its kind's shared inputs and context."""

    advantage: Callable  # group: (rewards [B, G]) ; token: (token_rewards, values, mask) [N, T]
    token_level: bool  # the advantage estimator needs a value model
    policy_loss: Callable  # (logprobs, old_logprobs, advantages, mask) [N, T]
    aggregation: Callable  # (per_token, mask, *, batch_tokens, batch_sequences, max_tokens)
    kl_estimator: Callable  # (logprobs, ref_logprobs) [N, T]
    entropy_controller: Callable  # (carried, observed, *, target) -> (carried, applied)
    sft_loss: Callable | str = "nll"  # (logprobs, mask) [n, T], on demonstrations (rlvr.algos.sft)
    off_policy_loss: Callable | str = "luffy"  # (logprobs, advantages, mask) [n, T], off-policy group members


def build_algorithm(algo, sft=None) -> Algorithm:
    """The parts an ``AlgoConfig`` names (each a ``Component``: name plus hyper-parameters), and the
    demonstration losses a ``SftConfig`` names."""
    from rlvr.algos.sft import OFF_POLICY_LOSSES, SFT_LOSSES

    kind = advantage_kind(algo.advantage.name)
    demo_losses = {}
    if sft is not None:
        demo_losses = {
            "sft_loss": SFT_LOSSES.bind(sft.loss.name, sft.loss.params(), "sft.loss"),
            "off_policy_loss": OFF_POLICY_LOSSES.bind(
                sft.off_policy_loss.name, sft.off_policy_loss.params(), "sft.off_policy_loss"
            ),
        }
    return Algorithm(
        advantage=KINDS[kind].bind(algo.advantage.name, algo.advantage.params(), "algo.advantage"),
        token_level=kind == "token",
        policy_loss=POLICY_LOSSES.bind(algo.policy_loss.name, algo.policy_loss.params(), "algo.policy_loss"),
        aggregation=AGGREGATIONS.bind(algo.aggregation.name, algo.aggregation.params(), "algo.aggregation"),
        kl_estimator=KL_ESTIMATORS.bind(algo.kl_estimator.name, algo.kl_estimator.params(), "algo.kl_estimator"),
        entropy_controller=ENTROPY_CONTROLLERS.bind(
            algo.entropy_controller.name, algo.entropy_controller.params(), "algo.entropy_controller"
        ),
        **demo_losses,
    )
