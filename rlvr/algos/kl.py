"""KL estimators between the current policy and a frozen reference, per token.

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
