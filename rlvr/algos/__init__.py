"""Registries of the loop's math: advantage estimators, policy losses, KL estimators, loss
aggregation. One signature per kind (see each module); hyper-parameters are keyword
arguments, never a config object; every function returns ``(value, metrics)``.
"""

from rlvr.algos.advantages import ADVANTAGES
from rlvr.algos.aggregation import AGGREGATIONS
from rlvr.algos.kl import KL_ESTIMATORS
from rlvr.algos.losses import POLICY_LOSSES

__all__ = ["ADVANTAGES", "AGGREGATIONS", "KL_ESTIMATORS", "POLICY_LOSSES"]
