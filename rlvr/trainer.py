"""The training loop, readable in one sitting.

Each step: pick prompts -> roll out G completions each -> score them -> group-relative
advantages -> clipped policy-gradient update(s) -> log -> (eval) -> (checkpoint).
Everything else lives in small modules this one calls.
"""

import copy
import random
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch

from rlvr import checkpoint as ckpt
from rlvr.algos import KL_ESTIMATORS
from rlvr.algos.entropy import entropy_coef_update, skywork_entropy_coef_update
from rlvr.algos.kl import adaptive_kl_coef
from rlvr.algos.losses import truncated_is_weights
from rlvr.algos.value import gae
from rlvr.collect import collect, estimator_hparams, group_advantages, reference_kl, token_width
from rlvr.config import RunConfig, to_yaml
from rlvr.envs import tool_metrics
from rlvr.errors import ConfigError, TrainingError
from rlvr.evaluate import evaluate
from rlvr.learner.critic import build_critic, critic_update, token_rewards, values_for
from rlvr.learner.forward.logprobs import body_and_head, completion_logprobs, per_row
from rlvr.learner.microbatch import make_micro_batches
from rlvr.learner.update import LossSettings, update_step
from rlvr.metrics import MetricsLogger, truncate_after
from rlvr.models import add_lora, load_model, resolve_device
from rlvr.rewards import REWARDS, load_reward_plugins
from rlvr.rollout import SamplingParams, make_engine
from rlvr.samplers import ShuffledSampler
from rlvr.tasks import make_task
from rlvr.types import Completion, Example


@dataclass
class Run:
    """Everything a step needs, built once by :func:`setup`."""

    config: RunConfig
    run_dir: Path
    model: torch.nn.Module
    ref_model: torch.nn.Module | None
    tokenizer: object
    engine: object
    train_set: list[Example]
    eval_set: list[Example]
    verifier: str
    sampler: ShuffledSampler
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    logger: MetricsLogger | None
    critic: torch.nn.Module | None = None  # value model, for algo.advantage: gae
    critic_optimizer: torch.optim.Optimizer | None = None
    kl_coef: float = 0.0  # current coefficients: adaptive ones move during training
    entropy_coef: float = 0.0  # the bonus the loss applies
    entropy_state: float = 0.0  # the entropy controller's carried coefficient
    step: int = 0


def train(config: RunConfig, run_dir: Path | None = None, resume: bool = False, stop_after: int | None = None) -> Path:
    """Train per ``config``; returns the run directory. ``stop_after`` ends the run right after
    that step's checkpoint, as a kill would (tests use it to check exact resume)."""
    run = setup(config, run_dir, resume)
    cfg = run.config
    try:
        if run.step == 0 and cfg.eval.before:
            run_eval(run)
        run.logger.start_progress(total=cfg.train.steps, done=run.step)
        while run.step < cfg.train.steps:
            run.step += 1
            metrics = train_step(run)
            run.logger.log(run.step, metrics)
            run.logger.advance(metrics)
            last = run.step == cfg.train.steps
            if cfg.eval.every and run.step % cfg.eval.every == 0 and not last:
                run_eval(run)
            if (cfg.checkpoint.every and run.step % cfg.checkpoint.every == 0) or last or run.step == stop_after:
                save(run)
            if run.step == stop_after:
                return run.run_dir
        run_eval(run)
        if cfg.checkpoint.export_final:
            ckpt.export_hf(run.model, run.tokenizer, run.run_dir / "final")
    finally:
        run.logger.close()
    return run.run_dir


def train_step(run: Run) -> dict[str, float]:
    cfg = run.config
    started = time.perf_counter()
    batch = collect(cfg, run.engine, run.sampler, run.train_set, run.verifier, rollout_sampling(cfg))
    metrics = {
        "train/reward": sum(batch.sampled_rewards) / len(batch.sampled_rewards),
        "train/accuracy": sum(v >= 1.0 for v in batch.components[run.verifier]) / len(batch.sampled),
        **{f"train/reward/{name}": sum(v) / len(v) for name, v in batch.components.items()},
        **length_metrics(batch.sampled),
        **(tool_metrics(batch.sampled) if cfg.tools.env != "none" else {}),
        **batch.metrics,
        "train/kl_coef": run.kl_coef,  # the coefficients this step used (adaptive ones move after it)
        "train/entropy_coef": run.entropy_coef,
    }
    if batch.kept:
        scored = time.perf_counter()
        per_token, extra = advantages(run, batch)
        metrics |= extra | policy_updates(run, batch.kept, per_token)
        metrics["time/update"] = time.perf_counter() - scored
        metrics["tokens/trained"] = cfg.train.inner_epochs * float(sum(sum(c.loss_mask) for c in batch.kept))
        metrics["tokens/forwarded"] = cfg.train.inner_epochs * forwarded_tokens(batch.kept, cfg.train.shared_prompt)
        metrics["throughput/update_tokens_per_s"] = metrics["tokens/forwarded"] / max(metrics["time/update"], 1e-9)
        adapt_coefficients(run, metrics, len(batch.kept))
        if cfg.log.samples_every and run.step % cfg.log.samples_every == 0:
            run.logger.log_samples(run.step, sample_rows(batch, per_token, cfg))
    else:
        metrics["sampling/skipped_update"] = 1.0  # every group agreed: no gradient this step
    metrics |= {
        "train/lr": run.scheduler.get_last_lr()[0],
        "time/step": time.perf_counter() - started,
        "tokens/generated": float(sum(sum(c.loss_mask) for c in batch.sampled)),
        "throughput/rollout_tokens_per_s": sum(sum(c.loss_mask) for c in batch.sampled)
        / max(metrics["time/rollout"], 1e-9),
    }
    return metrics


def advantages(run: Run, batch) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Per-token advantages [N, T] (and returns/old values for the critic) for the kept completions."""
    cfg = run.config
    kept, width = batch.kept, token_width(batch.kept)
    lengths = [len(c.token_ids) for c in kept]
    rewards, metrics = batch.rewards.clone(), {}
    needs_passes = cfg.algo.kl_in_reward or run.critic is not None or cfg.algo.tis_cap is not None
    micro = micro_batches(run, kept, {}) if needs_passes else []
    extra: dict[str, torch.Tensor] = {}
    if cfg.algo.tis_cap is not None:  # the trainer's own old log-probs, once, before any update of the step
        extra["old_logprobs"], tis_metrics = trainer_old_logprobs(run, micro, len(kept), width)
        metrics |= tis_metrics
    kl = None
    if cfg.algo.kl_in_reward and run.kl_coef > 0:
        estimator = KL_ESTIMATORS.get(cfg.algo.kl_estimator)
        kl = reference_kl(
            run.ref_model,
            micro,
            len(kept),
            width,
            estimator,
            cfg.rollout.temperature,
            cfg.train.shared_prompt,
            cfg.train.packed_sequences,
        )
        sequence_kl = kl.sum(dim=1)
        metrics["train/kl"] = (sequence_kl.sum() / max(sum(lengths), 1)).item()
        if run.critic is None:
            rewards = rewards - run.kl_coef * sequence_kl
    if run.critic is None:
        per_token, adv_metrics = group_advantages(cfg, rewards, width, lengths)
        return {"advantages": per_token, **extra}, metrics | adv_metrics
    values = values_for(run.critic, micro, len(kept), width, cfg.train.shared_prompt)
    mask = torch.zeros(len(kept), width)
    for i, length in enumerate(lengths):
        mask[i, :length] = 1.0
    token_rewards_ = token_rewards(rewards.tolist(), lengths, width, kl, run.kl_coef)
    adv, returns = gae(token_rewards_, values, mask, gamma=cfg.critic.gamma, lam=cfg.critic.lam)
    metrics |= {
        "adv/mean_abs": (adv.abs() * mask).sum().item() / mask.sum().item(),
        "critic/value_mean": ((values * mask).sum() / mask.sum()).item(),
    }
    return {"advantages": adv, "returns": returns, "old_values": values, **extra}, metrics


def trainer_old_logprobs(run: Run, micro, count: int, width: int) -> tuple[torch.Tensor, dict[str, float]]:
    """For truncated importance sampling: the trainer's log-probs [count, width] before this step's
    updates become the old policy's; each token is then weighted by min(pi_trainer / pi_rollout, cap)."""
    temperature, chunk = run.config.rollout.temperature, run.config.train.logprob_chunk
    packed_sequences = run.config.train.packed_sequences

    def logprobs(mb, prompts, prompt_of) -> torch.Tensor:
        return completion_logprobs(
            run.model, mb, temperature, chunk=chunk, prompts=prompts, prompt_of=prompt_of, packed_sequences=packed_sequences
        )[0]

    body = body_and_head(run.model)[0] if run.config.train.shared_prompt else None
    old = per_row(micro, count, width, next(run.model.parameters()).device, logprobs, body=body)
    rollout = per_row(micro, count, width, torch.device("cpu"), lambda mb, *_: mb.rollout_logprobs)
    mask = per_row(micro, count, width, torch.device("cpu"), lambda mb, *_: mb.mask)
    _, metrics = truncated_is_weights(old, rollout, mask, cap=run.config.algo.tis_cap)
    return old, metrics


def micro_batches(run: Run, completions: list[Completion], per_token: dict[str, torch.Tensor]):
    cfg = run.config.train
    return make_micro_batches(
        completions,
        per_token,
        cfg.micro_batch_size,
        run.tokenizer.pad_token_id,
        shared_prompt=cfg.shared_prompt,
        max_tokens=cfg.micro_batch_tokens,
    )


def policy_updates(run: Run, completions: list[Completion], per_token: dict[str, torch.Tensor]) -> dict[str, float]:
    """``inner_epochs`` passes over the kept completions, each in ``mini_batches`` optimizer steps."""
    cfg = run.config
    settings = LossSettings(
        policy_loss=cfg.algo.policy_loss,
        aggregation=cfg.algo.aggregation,
        temperature=cfg.rollout.temperature,
        hparams=estimator_hparams(cfg),
        kl_coef=0.0 if cfg.algo.kl_in_reward else run.kl_coef,
        kl_estimator=cfg.algo.kl_estimator,
        entropy_coef=run.entropy_coef,
        tis_cap=cfg.algo.tis_cap,
        logprob_chunk=cfg.train.logprob_chunk,
        shared_prompt=cfg.train.shared_prompt,
        packed_sequences=cfg.train.packed_sequences,
    )
    per_update: list[dict[str, float]] = []
    for epoch in range(cfg.train.inner_epochs):
        order = list(range(len(completions)))
        if cfg.train.mini_batches > 1:
            random.Random(f"{cfg.train.seed}-{run.step}-{epoch}").shuffle(order)
        size = max(len(order) // cfg.train.mini_batches, 1)
        for start in range(0, len(order), size):
            rows = order[start : start + size]
            subset = {name: values[rows] for name, values in per_token.items()}
            micro = micro_batches(run, [completions[i] for i in rows], subset)
            metrics = update_step(
                run.model,
                run.ref_model,
                run.optimizer,
                run.scheduler,
                micro,
                settings,
                cfg.optim.max_grad_norm,
                run.step,
            )
            if run.critic is not None:
                metrics |= critic_update(
                    run.critic,
                    run.critic_optimizer,
                    micro,
                    value_clip=cfg.critic.value_clip,
                    max_grad_norm=cfg.optim.max_grad_norm,
                    shared_prompt=cfg.train.shared_prompt,
                )
            per_update.append(metrics)
    metrics = {key: sum(m.get(key, 0.0) for m in per_update) / len(per_update) for key in per_update[-1]}
    metrics["logprob_mismatch"] = per_update[0]["logprob_mismatch"]  # before any update of this step
    return {f"train/{k}" if "/" not in k else k: v for k, v in metrics.items()}


def adapt_coefficients(run: Run, metrics: dict[str, float], batch_size: int) -> None:
    """The adaptive KL coefficient (toward algo.kl_target) and entropy coefficient (toward
    algo.entropy_target) move after each step; both are saved in checkpoints."""
    algo = run.config.algo
    if algo.kl_target is not None and "train/kl" in metrics:
        run.kl_coef = adaptive_kl_coef(
            run.kl_coef, metrics["train/kl"], target=algo.kl_target, horizon=algo.kl_horizon, batch_size=batch_size
        )
    if algo.entropy_target is not None and "train/entropy" in metrics:
        observed = metrics["train/entropy"]
        if algo.entropy_controller == "skywork":
            run.entropy_state, run.entropy_coef = skywork_entropy_coef_update(
                run.entropy_state, observed, target=algo.entropy_target
            )
        else:
            run.entropy_state = run.entropy_coef = entropy_coef_update(
                run.entropy_state, observed, target=algo.entropy_target, rate=algo.entropy_rate
            )


def forwarded_tokens(completions: list[Completion], shared_prompt: bool) -> float:
    """Tokens one pass of the update runs through the model: each distinct prompt once when prompts
    are shared (once per optimizer step: exact with one mini-batch, the default), else per row."""
    prompts = {tuple(c.prompt_ids) for c in completions} if shared_prompt else [c.prompt_ids for c in completions]
    return float(sum(len(p) for p in prompts) + sum(len(c.token_ids) for c in completions))


def length_metrics(completions: list[Completion]) -> dict[str, float]:
    lengths = [len(c.token_ids) for c in completions]
    return {
        "train/response_length": sum(lengths) / len(lengths),
        "train/response_length_max": float(max(lengths)),
        "train/truncated_frac": sum(c.finish_reason == "length" for c in completions) / len(completions),
    }


def sample_rows(batch, per_token: dict[str, torch.Tensor], cfg: RunConfig) -> list[dict]:
    rows = []
    for i, c in enumerate(batch.kept[: cfg.log.samples_per_dump]):
        j = batch.sampled.index(c)
        rows.append(
            {
                "id": c.example.id,
                "prompt": c.example.prompt[-1]["content"],
                "completion": c.text,
                "answer": c.example.answer,
                "reward": batch.sampled_rewards[j],
                "components": {name: values[j] for name, values in batch.components.items()},
                "advantage": per_token["advantages"][i, 0].item(),
                "finish_reason": c.finish_reason,
            }
        )
    return rows


def run_eval(run: Run) -> dict[str, float]:
    cfg = run.config
    sampling = SamplingParams(
        max_new_tokens=cfg.eval.max_new_tokens or cfg.rollout.max_new_tokens,
        temperature=cfg.eval.temperature,
        top_p=cfg.rollout.top_p if cfg.eval.temperature > 0 else 1.0,
        stop=cfg.rollout.stop,
        return_logprobs=False,
    )
    started = time.perf_counter()
    result = evaluate(run.engine, run.eval_set, run.verifier, sampling, cfg.eval.samples, cfg.tools)
    result.metrics["time/eval"] = time.perf_counter() - started
    run.logger.log(run.step, result.metrics)
    run.logger.print(
        f"eval at step {run.step}: accuracy {result.metrics['eval/accuracy']:.3f} on {len(run.eval_set)} held-out "
        f"problems, mean length {result.metrics['eval/response_length']:.1f} tokens"
    )
    with (run.run_dir / "eval_samples.jsonl").open("a") as handle:
        import json

        for row in result.rows[: cfg.log.samples_per_dump]:
            handle.write(json.dumps({"step": run.step, **row}) + "\n")
    return result.metrics


def rollout_sampling(cfg: RunConfig) -> SamplingParams:
    return SamplingParams(
        max_new_tokens=cfg.rollout.max_new_tokens,
        temperature=cfg.rollout.temperature,
        top_p=cfg.rollout.top_p,
        stop=cfg.rollout.stop,
    )


def reward_specs(cfg: RunConfig) -> list[tuple[str, float]]:
    return [(spec.name, spec.weight) for spec in cfg.rewards]


def save(run: Run) -> None:
    state = {
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "sampler": run.sampler.state_dict(),
        "coefficients": {"kl": run.kl_coef, "entropy": run.entropy_coef, "entropy_state": run.entropy_state},
    }
    if run.critic is not None:
        state["critic"] = {k: v.cpu() for k, v in run.critic.state_dict().items()}
        state["critic_optimizer"] = run.critic_optimizer.state_dict()
    ckpt.save_checkpoint(run.run_dir, run.step, run.model, state, to_yaml(run.config), run.config.checkpoint.keep)


def setup(config: RunConfig, run_dir: Path | None, resume: bool) -> Run:
    run_dir = Path(run_dir or config.run_dir or default_run_dir(config))
    checkpoints = ckpt.list_checkpoints(run_dir)
    if not resume and checkpoints:
        raise ConfigError(f"{run_dir} already holds a run; resume it with --resume {run_dir} or pick another run_dir")
    if resume and not checkpoints:
        raise ConfigError(f"nothing to resume in {run_dir}: it has no complete checkpoint")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(to_yaml(config))

    random.seed(config.train.seed)
    torch.manual_seed(config.train.seed)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    load_reward_plugins(config.plugins)
    task = make_task(config.task.name, **config.task.params())
    train_set, eval_set = task.split("train"), task.split("eval")[: config.eval.size]
    verifier = config.eval.verifier or task.verifier
    REWARDS.get(verifier)

    model, tokenizer = load_model(config.model.name, config.model.dtype, seed=config.train.seed)
    device = resolve_device(config.train.device)
    if device.type == "cpu" and config.train.reuse_freed_memory:
        from rlvr.cpu.allocator import reuse_freed_memory  # CPU-only code, imported only on CPU

        reuse_freed_memory()
    model.to(device)
    ref_model = None
    if config.algo.kl_coef > 0:
        ref_model = copy.deepcopy(model).eval().requires_grad_(False)
    if config.model.lora_rank:
        m = config.model
        model = add_lora(model, m.lora_rank, m.lora_alpha, m.lora_dropout, m.lora_target_modules)
    if config.model.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optim = config.optim
    optimizer = torch.optim.AdamW(  # fused: one kernel over all parameters (CPU and CUDA) instead of ~10 passes
        params, lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay, fused=device.type in ("cpu", "cuda")
    )
    total_updates = config.train.steps * config.train.inner_epochs * config.train.mini_batches
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(optim.schedule, optim.warmup_steps, total_updates)
    )
    critic = None
    if config.critic.model is not None:
        device = next(model.parameters()).device
        critic = build_critic(
            config.critic.model,
            config.model.name,
            config.model.dtype,
            config.train.seed,
            device,
            packed_sequences=config.train.packed_sequences,
        )
    # Re-seed once every model exists: converting a model on a cold cache draws from the RNG,
    # and the rollout stream must not depend on whether the cache was warm.
    random.seed(config.train.seed)
    torch.manual_seed(config.train.seed)
    engine = make_engine(
        config.rollout.engine, model, tokenizer, config.rollout.batch_size, config.rollout.onednn_weights
    )
    sampler = ShuffledSampler(len(train_set), config.train.seed)
    run = Run(
        config, run_dir, model, ref_model, tokenizer, engine, train_set, eval_set, verifier,
        sampler, optimizer, scheduler, logger=None, kl_coef=config.algo.kl_coef,
        entropy_coef=config.algo.entropy_coef, entropy_state=config.algo.entropy_coef,
    )  # fmt: skip
    if critic is not None:
        run.critic = critic
        run.critic_optimizer = torch.optim.AdamW(critic.parameters(), lr=config.critic.lr, betas=optim.betas)
    if resume:
        restore(run, checkpoints[-1])  # truncates the JSONL files: open them only afterwards
    run.logger = logger = MetricsLogger(run_dir, tensorboard=config.log.tensorboard, console=config.log.console)
    logger.print(f"run directory: {run_dir}" + (f" (resumed at step {run.step})" if resume else ""))
    return run


def restore(run: Run, checkpoint: Path) -> None:
    """Everything a step depends on, as it was when ``checkpoint`` was written."""
    state = ckpt.load_checkpoint(checkpoint, run.model)
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.sampler.load_state_dict(state["sampler"])
    coefficients = state["coefficients"]
    run.kl_coef, run.entropy_coef, run.entropy_state = (coefficients[k] for k in ("kl", "entropy", "entropy_state"))
    if run.critic is not None:
        run.critic.load_state_dict(state["critic"])
        run.critic_optimizer.load_state_dict(state["critic_optimizer"])
    ckpt.restore_rng(state["rng"])
    run.step = state["step"]
    for name in ("metrics.jsonl", "samples.jsonl", "eval_samples.jsonl"):
        truncate_after(run.run_dir / name, run.step)


def lr_lambda(schedule: str, warmup: int, total: int):
    """Multiplier of the base learning rate after ``k`` optimizer steps: linear warm-up, then
    constant, linear decay to 0, or cosine decay to 0."""
    import math

    def factor(k: int) -> float:
        if warmup and k < warmup:
            return (k + 1) / warmup
        if schedule == "constant":
            return 1.0
        progress = min((k - warmup) / max(total - warmup, 1), 1.0)
        return 1.0 - progress if schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def default_run_dir(config: RunConfig) -> Path:
    return Path("runs") / f"{config.recipe}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


__all__ = ["train", "TrainingError"]
