"""KL estimators between the current policy and a frozen reference, per token; and the
adaptive KL coefficient controller (not a registry entry).

Signature: ``fn(logprobs: Tensor[N, T], ref_logprobs: Tensor[N, T]) -> (Tensor[N, T], metrics)``,
the tokens being samples from the current (or sampling) policy. Schulman's "Approximating
KL divergence" (2020) estimators of KL(pi || pi_ref), with log r = ref_logp - logp:

- k1 = -log r: unbiased, can be negative per token;
- k2 = (log r)^2 / 2: biased, always >= 0, low variance;
- k3 = (r - 1) - log r: unbiased, always >= 0 (GRPO's choice, DeepSeekMath eq. 4).
"""

import torch

from rlvr.registry import Registry

KL_ESTIMATORS: Registry = Registry("KL estimator")


@KL_ESTIMATORS.register("k1")
def kl_k1(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> tuple[torch.Tensor, dict]:
    return logprobs - ref_logprobs, {}


@KL_ESTIMATORS.register("k2")
def kl_k2(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> tuple[torch.Tensor, dict]:
    return 0.5 * (ref_logprobs - logprobs) ** 2, {}


@KL_ESTIMATORS.register("k3")
def kl_k3(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> tuple[torch.Tensor, dict]:
    log_ratio = ref_logprobs - logprobs
    return torch.exp(log_ratio) - log_ratio - 1.0, {}


def adaptive_kl_coef(
    coef: float, observed_kl: float, *, target: float, horizon: int = 10_000, batch_size: int
) -> float:
    """The adaptive KL controller of Ziegler et al. 2019 ("Fine-Tuning Language Models from
    Human Preferences", arXiv 1909.08593), as in its code (lm-human-preferences'
    ``AdaptiveKLController``; the paper writes the factor batch_size / horizon as K_beta):

        error = clip(observed_kl / target - 1, -0.2, 0.2)
        coef <- coef * (1 + error * batch_size / horizon)

    A proportional controller: the coefficient grows while the measured KL is above
    ``target`` and shrinks while below, by at most 20% x batch_size / horizon per call. Call it
    once per step with that step's KL (measured as the target is: per sequence or per token)
    and the step's number of sequences; horizon 10,000 is the paper code's default.
    """
    if target <= 0 or horizon <= 0:
        raise ValueError(f"adaptive KL needs target > 0 and horizon > 0, got {target}, {horizon}")
    error = min(max(observed_kl / target - 1.0, -0.2), 0.2)
    return coef * (1.0 + error * batch_size / horizon)
