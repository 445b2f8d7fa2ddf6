"""A run's learner inputs from its config: the micro-batch cut and the loss settings of a step.

Shared by the RL step (:mod:`rlvr.trainer`) and the SFT and mixing steps (:mod:`rlvr.mixing`), so both
train through the same :func:`rlvr.learner.update.update_step` with the same settings. ``run`` is a
:class:`rlvr.run_setup.Run` (duck-typed: its config, tokenizer, algorithm, coefficients, precision).
"""

import torch

from rlvr.learner.microbatch import make_micro_batches
from rlvr.learner.update import LossSettings
from rlvr.types import Completion


def micro_batches(run, completions: list[Completion], per_token: dict[str, torch.Tensor]):
    cfg = run.config.train
    return make_micro_batches(
        completions,
        per_token,
        cfg.micro_batch_size,
        run.tokenizer.pad_token_id,
        shared_prompt=cfg.shared_prompt,
        max_tokens=cfg.micro_batch_tokens,
    )


def loss_settings(run, sft_coef: float = 1.0, rl_coef: float = 1.0) -> LossSettings:
    cfg, algo = run.config, run.algorithm
    return LossSettings(
        policy_loss=algo.policy_loss,
        aggregation=algo.aggregation,
        temperature=cfg.rollout.temperature,
        max_tokens=cfg.rollout.max_new_tokens,
        kl_coef=0.0 if cfg.algo.kl_in_reward else run.coefficients.kl,
        kl_estimator=algo.kl_estimator,
        entropy_coef=run.coefficients.entropy,
        tis_cap=cfg.algo.tis_cap,
        logprob_chunk=cfg.train.logprob_chunk,
        shared_prompt=cfg.train.shared_prompt,
        packed_sequences=cfg.train.packed_sequences,
        precision=run.precision,
        fp32_logits=cfg.train.fp32_logits,
        sft_loss=algo.sft_loss,
        sft_coef=sft_coef,
        rl_coef=rl_coef,
        off_policy_loss=algo.off_policy_loss,
    )
