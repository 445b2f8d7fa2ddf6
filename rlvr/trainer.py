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
from rlvr.algos import ADVANTAGES
from rlvr.config import RunConfig, to_yaml
from rlvr.errors import ConfigError, TrainingError
from rlvr.evaluate import evaluate
from rlvr.metrics import MetricsLogger, truncate_after
from rlvr.models import add_lora, load_model, resolve_device
from rlvr.rewards import REWARDS, load_reward_plugins, score
from rlvr.rollout import SamplingParams, make_engine
from rlvr.samplers import ShuffledSampler
from rlvr.tasks import make_task
from rlvr.types import Completion, Example
from rlvr.update import LossSettings, make_micro_batches, update_step


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
    logger: MetricsLogger
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
    examples = [run.train_set[i] for i in run.sampler.next(cfg.rollout.prompts_per_step)]
    groups = run.engine.generate(examples, cfg.rollout.group_size, rollout_sampling(cfg))
    completions = [c for group in groups for c in group]  # [B*G], grouped by prompt
    rolled_out = time.perf_counter()

    totals, components = score([c.text for c in completions], [c.example for c in completions], reward_specs(cfg))
    if run.verifier not in components:
        _, extra = score([c.text for c in completions], [c.example for c in completions], [(run.verifier, 0.0)])
        components[run.verifier] = extra[run.verifier]
    scored = time.perf_counter()

    rewards = torch.tensor(totals, dtype=torch.float).view(len(examples), cfg.rollout.group_size)  # [B, G]
    advantages, adv_metrics = ADVANTAGES.get(cfg.algo.advantage)(rewards, eps=cfg.algo.std_eps)
    update_metrics = policy_updates(run, completions, advantages.flatten().tolist())
    updated = time.perf_counter()

    metrics = {
        "train/reward": sum(totals) / len(totals),
        "train/accuracy": sum(v >= 1.0 for v in components[run.verifier]) / len(completions),
        **{f"train/reward/{name}": sum(v) / len(v) for name, v in components.items()},
        **length_metrics(completions),
        **adv_metrics,
        **{f"train/{k}" if not k.startswith(("loss/", "adv/")) else k: v for k, v in update_metrics.items()},
        "train/lr": run.scheduler.get_last_lr()[0],
        "time/rollout": rolled_out - started,
        "time/reward": scored - rolled_out,
        "time/update": updated - scored,
        "time/step": updated - started,
        "throughput/rollout_tokens_per_s": sum(len(c.token_ids) for c in completions) / max(rolled_out - started, 1e-9),
        "throughput/update_tokens_per_s": cfg.train.inner_epochs
        * sum(len(c.prompt_ids) + len(c.token_ids) for c in completions)
        / max(updated - scored, 1e-9),
    }
    if cfg.log.samples_every and run.step % cfg.log.samples_every == 0:
        run.logger.log_samples(
            run.step, sample_rows(completions, totals, components, advantages.flatten().tolist(), cfg)
        )
    return metrics


def policy_updates(run: Run, completions: list[Completion], advantages: list[float]) -> dict[str, float]:
    """``inner_epochs`` passes over the step's completions, each in ``mini_batches`` optimizer steps."""
    cfg = run.config
    settings = LossSettings(
        policy_loss=cfg.algo.policy_loss,
        aggregation=cfg.algo.aggregation,
        clip_low=cfg.algo.clip_low,
        clip_high=cfg.algo.clip_high,
        kl_coef=cfg.algo.kl_coef,
        kl_estimator=cfg.algo.kl_estimator,
        temperature=cfg.rollout.temperature,
    )
    pad_id = run.tokenizer.pad_token_id
    per_update: list[dict[str, float]] = []
    for epoch in range(cfg.train.inner_epochs):
        order = list(range(len(completions)))
        if cfg.train.mini_batches > 1:
            random.Random(f"{cfg.train.seed}-{run.step}-{epoch}").shuffle(order)
        size = len(order) // cfg.train.mini_batches
        for start in range(0, len(order), size):
            rows = order[start : start + size]
            micro = make_micro_batches(
                [completions[i] for i in rows], [advantages[i] for i in rows], cfg.train.micro_batch_size, pad_id
            )
            per_update.append(
                update_step(
                    run.model,
                    run.ref_model,
                    run.optimizer,
                    run.scheduler,
                    micro,
                    settings,
                    cfg.optim.max_grad_norm,
                    run.step,
                )
            )
    metrics = {key: sum(m[key] for m in per_update) / len(per_update) for key in per_update[-1]}
    metrics["logprob_mismatch"] = per_update[0]["logprob_mismatch"]  # before any update of this step
    return metrics


def length_metrics(completions: list[Completion]) -> dict[str, float]:
    lengths = [len(c.token_ids) for c in completions]
    return {
        "train/response_length": sum(lengths) / len(lengths),
        "train/response_length_max": float(max(lengths)),
        "train/truncated_frac": sum(c.finish_reason == "length" for c in completions) / len(completions),
    }


def sample_rows(completions, totals, components, advantages, cfg: RunConfig) -> list[dict]:
    rows = []
    for i, c in enumerate(completions[: cfg.log.samples_per_dump]):
        rows.append(
            {
                "id": c.example.id,
                "prompt": c.example.prompt[-1]["content"],
                "completion": c.text,
                "answer": c.example.answer,
                "reward": totals[i],
                "components": {name: values[i] for name, values in components.items()},
                "advantage": advantages[i],
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
    result = evaluate(run.engine, run.eval_set, run.verifier, sampling, cfg.eval.samples)
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
    }
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
    model.to(resolve_device(config.train.device))
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
    optimizer = torch.optim.AdamW(params, lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay)
    total_updates = config.train.steps * config.train.inner_epochs * config.train.mini_batches
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(optim.schedule, optim.warmup_steps, total_updates)
    )
    engine = make_engine(config.rollout.engine, model, tokenizer, config.rollout.batch_size)
    sampler = ShuffledSampler(len(train_set), config.train.seed)

    step = 0
    if resume:
        state = ckpt.load_checkpoint(checkpoints[-1], model)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        sampler.load_state_dict(state["sampler"])
        ckpt.restore_rng(state["rng"])
        step = state["step"]
        for name in ("metrics.jsonl", "samples.jsonl", "eval_samples.jsonl"):
            truncate_after(run_dir / name, step)
    logger = MetricsLogger(run_dir, tensorboard=config.log.tensorboard, console=config.log.console)
    logger.print(f"run directory: {run_dir}" + (f" (resumed at step {step})" if resume else ""))
    return Run(
        config,
        run_dir,
        model,
        ref_model,
        tokenizer,
        engine,
        train_set,
        eval_set,
        verifier,
        sampler,
        optimizer,
        scheduler,
        logger,
        step,
    )


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
