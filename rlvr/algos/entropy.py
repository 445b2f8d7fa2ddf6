"""Entropy control: adapt the entropy-bonus coefficient to hold the policy's entropy near a target.

The bonus itself is one line in the loss (``-entropy_coef * entropy``, per token, aggregated like
the policy loss); what needs care is its coefficient. A fixed one either does nothing or makes
entropy explode; these controllers raise it while entropy is below the target and lower it
above, once per step, with the step's mean token entropy.

``ENTROPY_CONTROLLERS`` (``algo.entropy_controller``) holds them under one signature::

    fn(carried: float, observed: float, *, target: float, <hyper-parameters>) -> (carried, applied)

``carried`` is the controller's state from step to step, ``applied`` the coefficient the next
step's loss uses; ``target`` is ``algo.entropy_target``.
"""

from typing import Annotated

from pydantic import Field

from rlvr.registry import Registry

ENTROPY_CONTROLLERS: Registry = Registry("entropy controller", context=("target",))


def entropy_coef_update(
    coef: float,
    observed_entropy: float,
    *,
    target: float,
    rate: float,
    min_coef: float = 0.0,
    max_coef: float = 1.0,
) -> float:
    """Proportional entropy control: coef <- clip(coef + rate * (target - observed), min_coef, max_coef).

    The idea is Skywork-OR1's "adaptive entropy control" (He et al. 2025, "Skywork Open Reasoner 1
    Technical Report", arXiv 2505.22312), with a step proportional to the error instead of their
    fixed step; see :func:`skywork_entropy_coef_update` for their exact rule.
    """
    return min(max(coef + rate * (target - observed_entropy), min_coef), max_coef)


def skywork_entropy_coef_update(
    coef: float,
    observed_entropy: float,
    *,
    target: float,
    delta: float = 1e-4,
    min_coef: float = 0.0,
    max_coef: float = 5e-3,
) -> tuple[float, float]:
    """Skywork-OR1's adaptive entropy control, as in its code (SkyworkAI/Skywork-OR1,
    ``EntController``): a fixed step toward the target, and the bonus applied only while entropy
    is below it:

        coef <- clip(coef + delta if observed < target else coef - delta, min_coef, max_coef)
        applied = coef if observed < target else 0

    Returns ``(coef, applied)``: carry ``coef`` to the next step, put ``applied`` in the loss.
    Defaults are the released scripts' (delta 1e-4, coefficient in [0, 5e-3]; their target
    entropy is 0.2).
    """
    below = observed_entropy < target
    coef = min(max(coef + delta if below else coef - delta, min_coef), max_coef)
    return coef, coef if below else 0.0


@ENTROPY_CONTROLLERS.register("proportional")
def proportional_controller(
    carried: float,
    observed: float,
    *,
    target: float,
    rate: Annotated[float, Field(gt=0)] = 1e-3,
    min_coef: Annotated[float, Field(ge=0)] = 0.0,
    max_coef: Annotated[float, Field(gt=0)] = 1.0,
) -> tuple[float, float]:
    """:func:`entropy_coef_update`; the coefficient it carries is the one applied."""
    coef = entropy_coef_update(carried, observed, target=target, rate=rate, min_coef=min_coef, max_coef=max_coef)
    return coef, coef


@ENTROPY_CONTROLLERS.register("skywork")
def skywork_controller(
    carried: float,
    observed: float,
    *,
    target: float,
    delta: Annotated[float, Field(gt=0)] = 1e-4,
    min_coef: Annotated[float, Field(ge=0)] = 0.0,
    max_coef: Annotated[float, Field(gt=0)] = 5e-3,
) -> tuple[float, float]:
    """:func:`skywork_entropy_coef_update` (Skywork-OR1's fixed steps, the bonus only below target)."""
    return skywork_entropy_coef_update(
        carried, observed, target=target, delta=delta, min_coef=min_coef, max_coef=max_coef
    )
