"""Registries of the loop's math: advantage estimators, policy losses, KL estimators, loss
aggregation. One signature per kind (see each module); hyper-parameters are keyword
arguments, never a config object; every function returns ``(value, metrics)``.

Plain functions beside the registries: the adaptive KL and entropy coefficient controllers,
truncated importance weights, DAPO's overlong penalty, and GAE with the clipped value loss.
"""

from rlvr.algos import advantages_binary, advantages_think, losses_reinforce  # noqa: F401  (they register into the registries)
from rlvr.algos.advantages import ADVANTAGES
from rlvr.algos.aggregation import AGGREGATIONS
from rlvr.algos.entropy import ENTROPY_CONTROLLERS, entropy_coef_update, skywork_entropy_coef_update
from rlvr.algos.kl import KL_ESTIMATORS, adaptive_kl_coef
from rlvr.algos.losses import POLICY_LOSSES, truncated_is_weights
from rlvr.algos.shaping import overlong_penalty
from rlvr.algos.value import TOKEN_ADVANTAGES, gae, value_loss

__all__ = [
    "ADVANTAGES",
    "AGGREGATIONS",
    "ENTROPY_CONTROLLERS",
    "KL_ESTIMATORS",
    "POLICY_LOSSES",
    "TOKEN_ADVANTAGES",
    "adaptive_kl_coef",
    "entropy_coef_update",
    "gae",
    "overlong_penalty",
    "skywork_entropy_coef_update",
    "truncated_is_weights",
    "value_loss",
]
