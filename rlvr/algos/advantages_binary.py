"""Advantage estimators defined for binary (0/1) rewards: pass@k training and BNPO.

Same signature as every estimator in :mod:`rlvr.algos.advantages`, registered in the same
``ADVANTAGES`` registry.
"""

import math
from typing import Annotated

import torch
from pydantic import Field

from rlvr.algos.advantages import ADVANTAGES, group_metrics

BNPO_MAX_WEIGHT = 1e6  # cap on 1 / f_N(p), as in the BNPO authors' code


def _require_binary(rewards: torch.Tensor, name: str) -> None:
    if not bool(((rewards == 0) | (rewards == 1)).all()):
        bad = rewards[(rewards != 0) & (rewards != 1)][:3].tolist()
        raise ValueError(
            f"algo.advantage {name!r} needs binary rewards (0 or 1), got e.g. {bad}; "
            "use a 0/1 verifier reward or another estimator (grpo, dr_grpo, rloo)"
        )


def _comb(n: int, k: int) -> int:
    """C(n, k), 0 when n < 0, k < 0 or k > n."""
    return math.comb(n, k) if n >= 0 and k >= 0 else 0


@ADVANTAGES.register("pass_k", binary_rewards=True)
def pass_k_advantage(
    rewards: torch.Tensor, *, pass_k: Annotated[int, Field(ge=1)] = 4, eps: Annotated[float, Field(ge=0)] = 1e-6
) -> tuple[torch.Tensor, dict]:
    """Pass@k training, analytical advantage (Chen et al. 2025, "Pass@k Training for Adaptively
    Balancing Exploration and Exploitation of Large Reasoning Models", arXiv 2508.10751).

    The group's reward is pass@k itself; its advantage is derived in closed form over all
    size-k subsets of the G = n samples, c of them correct:

        R = 1 - C(n - c, k) / C(n, k)          (unbiased pass@k of the group)
        sigma = sqrt(R (1 - R))
        A_correct   = (1 - R) / (sigma + eps)
        A_incorrect = (1 - R - C(n - c - 1, k - 1) / C(n - 1, k - 1)) / (sigma + eps)

    Followed: the formula in the authors' README and ``code/passk_adv.py`` (RUCAIBox/
    Passk_Training), which adds the eps (1e-6) to sigma. With k = 1 it is GRPO with the
    population std, (r - p) / sqrt(p (1 - p)); all-correct and all-wrong groups get 0, and so
    does any group with c > n - k (every k-subset holds a correct answer: R = 1). The
    values depend only on (n, c), so they are tabulated for c = 0..n and gathered. Needs
    1 <= pass_k <= G and binary rewards (ValueError otherwise). The default k = 4 is a
    choice for groups of 8 or more, not a value taken from the paper.
    """
    _require_binary(rewards, "pass_k")
    n = rewards.shape[1]
    if not 1 <= pass_k <= n:
        raise ValueError(f"pass_k must be between 1 and the group size {n}, got {pass_k}")
    r_group, a_pos, a_neg = [], [], []
    for c in range(n + 1):
        r = 1.0 - _comb(n - c, pass_k) / _comb(n, pass_k)
        scale = math.sqrt(max(r * (1.0 - r), 0.0)) + eps
        scale = scale if scale > 0 else math.inf  # sigma = 0 (R is 0 or 1): every numerator used is 0
        r_group.append(r)
        a_pos.append((1.0 - r) / scale)
        a_neg.append((1.0 - r - _comb(n - c - 1, pass_k - 1) / _comb(n - 1, pass_k - 1)) / scale)
    correct = rewards.sum(dim=1).long()  # [B]

    def per_group(table: list[float]) -> torch.Tensor:  # [B, 1]: the table's entry for each group's c
        return torch.tensor(table, dtype=torch.float64)[correct].to(rewards).unsqueeze(1)

    pos, neg = per_group(a_pos), per_group(a_neg)
    advantages = torch.where(rewards == 1, pos, neg)
    metrics = {**group_metrics(advantages, rewards), "adv/group_pass_k": per_group(r_group).mean().item()}
    return advantages, metrics


def _beta_log_density(p: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    log_norm = math.lgamma(alpha) + math.lgamma(beta) - math.lgamma(alpha + beta)
    return torch.xlogy(p.new_tensor(alpha - 1.0), p) + torch.xlogy(p.new_tensor(beta - 1.0), 1.0 - p) - log_norm


@ADVANTAGES.register("bnpo", binary_rewards=True)
def bnpo_advantage(rewards: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """BNPO (Xiao et al. 2025, "BNPO: Beta Normalization Policy Optimization", arXiv 2506.02864):

        A_i = (r_i - p) / f_N(p; alpha, beta),   p = the group's success rate,

    f_N the Beta(alpha, beta) density. Naming follows the paper: the success rates p of the
    batch's prompts are modelled as Beta(a, b), fitted by the method of moments to this
    batch's p values (m = mean, v = unbiased variance over the B groups):

        a = (m (1 - m) / v - 1) m,   b = (m (1 - m) / v - 1) (1 - m),

    and the normalizer's parameters are the paper's variance-minimizing choice
    alpha = 1 + a / 3, beta = 1 + b / 3. Re-fitting every batch makes them track the policy
    with no state between steps.

    Followed: the authors' code (changyi7231/BNPO, ``compute_bnpo_outcome_advantage``), which
    also clamps alpha, beta >= 1 and 1 / f_N to at most 1e6. Where the fit is undefined (one
    group, or v = 0) a = b = 0, so alpha = beta = 1 (uniform, A = r - p: REINFORCE with the
    group baseline); the authors' code gives the same for one group. alpha = beta = 3/2 gives
    f_N = (8 / pi) sqrt(p (1 - p)), i.e. GRPO (population std) up to a constant. Uncertain: the
    paper's exact statement of the optimum (read here from the code, not the PDF), and its
    "advantage decomposition" for non-binary rewards, not implemented: rewards must lie in
    [0, 1] (the theory is for 0/1 rewards; the authors' code rescales others into [0, 1]).
    """
    if bool(((rewards < 0) | (rewards > 1)).any()):
        raise ValueError("algo.advantage 'bnpo' needs rewards in [0, 1] (binary in the paper)")
    p = rewards.mean(dim=1)  # [B]
    a = b = 0.0
    if p.numel() > 1:
        m, v = p.mean().item(), p.var().item()
        if v > 1e-12:
            common = m * (1.0 - m) / v - 1.0
            a, b = common * m, common * (1.0 - m)
    alpha, beta = max(1.0 + a / 3.0, 1.0), max(1.0 + b / 3.0, 1.0)
    weight = torch.exp(-_beta_log_density(p.double(), alpha, beta)).clamp(max=BNPO_MAX_WEIGHT).to(rewards)
    advantages = (rewards - p.unsqueeze(1)) * weight.unsqueeze(1)
    metrics = {
        **group_metrics(advantages, rewards),
        "adv/bnpo_a": a,
        "adv/bnpo_b": b,
        "adv/bnpo_alpha": alpha,
        "adv/bnpo_beta": beta,
    }
    return advantages, metrics
