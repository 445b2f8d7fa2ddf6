"""The training loop, readable in one sitting.

Each step: pick prompts -> roll out G completions each -> score them -> group-relative
advantages -> clipped policy-gradient update(s) -> log -> (eval) -> (checkpoint).
Everything else lives in small modules this one calls.
"""

import json
import random
import time
from functools import partial
from math import isnan
from pathlib import Path

import torch

from rlvr import checkpoint as ckpt
from rlvr import mixing
from rlvr.algos.kl import adaptive_kl_coef
from rlvr.collect import collect
from rlvr.config import RunConfig, to_yaml
from rlvr.envs import tool_metrics
from rlvr.errors import TrainingError
from rlvr.evaluate import evaluate
from rlvr.learner.critic import critic_update, token_rewards, values_for
from rlvr.learner.microbatch import forwarded_tokens
from rlvr.learner.passes import reference_kl, token_width, trainer_old_logprobs
from rlvr.learner.settings import loss_settings, micro_batches
from rlvr.learner.update import update_step
from rlvr.rewards import score
from rlvr.rewards.mix import verifier_reward
from rlvr.rollout import SamplingParams
from rlvr.rollout.seeds import derive_seed
from rlvr.rollout.think import think_metrics
from rlvr.run_setup import Run, precision_line, setup  # noqa: F401  (setup and precision_line: public here too)
from rlvr.types import Completion


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
            stage = mixing.stage_at(cfg, run.step)  # SFT or RL (one RL stage without `stages`)
            mixing.enter_stage(run, stage)
            metrics = mixing.sft_step(run) if stage.kind == "sft" else train_step(run)
            run.logger.log(run.step, metrics)
            run.logger.advance(metrics)
            last = run.step == cfg.train.steps
            stage_ends = run.step == stage.end and not last  # evaluate between stages
            if (cfg.eval.every and run.step % cfg.eval.every == 0 and not last) or stage_ends:
                run_eval(run)
            if (cfg.checkpoint.every and run.step % cfg.checkpoint.every == 0) or last or run.step == stop_after:
                save(run)
            if run.step == stop_after:
                return run.run_dir
        run_eval(run)
        if cfg.checkpoint.export_final:
            final = ckpt.export_hf(run.model, run.tokenizer, run.run_dir / "final", base_model=cfg.model.name)
            if cfg.checkpoint.push_to_hub:
                url = ckpt.push_to_hub(final, cfg.checkpoint.push_to_hub, cfg.checkpoint.hub_private)
                run.logger.print(f"final policy uploaded: {url}")
    finally:
        run.close()
    return run.run_dir


def train_step(run: Run) -> dict[str, float]:
    cfg = run.config
    started = time.perf_counter()
    terms = run.rewards
    for controller in run.reward_controllers:  # LASER-D's targets as of this step
        terms = controller.terms(terms)
    batch = run.pipeline.take() if run.pipeline is not None else None  # generated during the last step
    run.engine.update_weights(run.model, version=run.step - 1)  # the weights after the last step sample this one
    if batch is None:
        batch = collect_step(run, terms, run.step)
    sampled = [i for i, c in enumerate(batch.sampled) if c.origin == "policy" and not c.hint_level]  # its own
    metrics = {
        "train/reward": sum(batch.sampled_rewards[i] for i in sampled) / len(sampled),
        "train/accuracy": sum(batch.components[run.verifier][i] >= 1.0 for i in sampled) / len(sampled),
        **{f"train/reward/{name}": nan_mean([v[i] for i in sampled]) for name, v in batch.components.items()},
        **length_metrics([batch.sampled[i] for i in sampled]),
        **(tool_metrics([batch.sampled[i] for i in sampled]) if cfg.tools.env != "none" else {}),
        **(think_metrics([batch.sampled[i] for i in sampled], cfg.think) if cfg.think.enabled else {}),
        **mixing.guided_metrics(batch, run.verifier),
        **batch.metrics,
        **run.sampler.observe(batch.results),  # the sampler learns what the policy solves
        **getattr(run.engine, "last_sync", {}),  # a rollout pool's weight sync: seconds and MB
        "train/kl_coef": run.coefficients.kl,  # the coefficients this step used (adaptive ones move after it)
        "train/entropy_coef": run.coefficients.entropy,
    }
    if run.pipeline is not None:  # one step off-policy: the next step's batch generates while this one trains
        metrics["distributed/staleness"] = run.step - 1 - min(c.policy_version for c in batch.sampled)
        if run.step < cfg.train.steps:
            run.pipeline.launch(partial(collect_step, run, terms, run.step + 1, version=run.step - 1))
    if run.replay is not None:  # ReMix: recent groups trained on again (rlvr.samplers.replay)
        metrics |= run.replay.mix(batch, run.step)
    if batch.kept:
        scored = time.perf_counter()
        per_token, extra = advantages(run, batch)
        width = per_token["advantages"].shape[1]
        per_token["off_policy"] = mixing.off_policy_rows(batch.kept, width)  # LUFFY's demonstrations in the groups
        completions, per_token, sft_coef = mixing.with_auxiliary_demos(run, batch.kept, per_token)
        metrics |= extra | policy_updates(run, completions, per_token, sft_coef)
        check_mismatch(cfg, metrics, run.step)
        metrics["time/update"] = time.perf_counter() - scored
        metrics["tokens/trained"] = cfg.train.inner_epochs * float(sum(sum(c.loss_mask) for c in completions))
        metrics["tokens/forwarded"] = cfg.train.inner_epochs * forwarded_tokens(completions, cfg.train.shared_prompt)
        metrics["throughput/update_tokens_per_s"] = metrics["tokens/forwarded"] / max(metrics["time/update"], 1e-9)
        adapt_coefficients(run, metrics, len(batch.kept))
        if cfg.log.samples_every and run.step % cfg.log.samples_every == 0:
            run.logger.log_samples(run.step, sample_rows(batch, per_token, cfg))
    else:
        metrics["sampling/skipped_update"] = 1.0  # every group agreed: no gradient this step
    for controller in run.reward_controllers:
        metrics |= controller.observe(batch.sampled, batch.components[run.verifier])
    if run.relift is not None:  # ReLIFT: SFT on the demonstrations of prompts RL keeps failing
        metrics |= mixing.relift_after(run, batch)
    generated = float(sum(sum(c.loss_mask) for c in batch.sampled if c.origin != "demo"))
    metrics |= {
        "train/lr": run.scheduler.get_last_lr()[0],
        "time/step": time.perf_counter() - started,
        "tokens/generated": generated,
        "throughput/rollout_tokens_per_s": generated / max(metrics["time/rollout"], 1e-9),
    }
    return metrics


def collect_step(run: Run, terms, step: int, version: int | None = None):
    """Step ``step``'s rollouts, scored and filtered (:func:`rlvr.collect.collect`)."""
    cfg = run.config
    pool = run.placement.rewards if run.placement is not None else None
    return collect(
        cfg, run.engine, run.sampler, run.train_set, run.verifier, rollout_sampling(cfg, step), terms, run.demos,
        step=step, scaffold=run.scaffold, version=version, scorer=pool.score if pool is not None else score,
    )  # fmt: skip


def advantages(run: Run, batch) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Per-token advantages [N, T] (and returns/old values for the critic) for the kept completions."""
    cfg, algo = run.config, run.algorithm
    kept, width = batch.kept, token_width(batch.kept)
    lengths = [len(c.token_ids) for c in kept]
    rewards, metrics = batch.rewards.clone(), {}
    kl_coef = run.coefficients.kl
    needs_passes = cfg.algo.kl_in_reward or run.critic is not None or cfg.algo.tis_cap is not None
    demos = {"off_policy": mixing.off_policy_rows(kept, width)}  # TIS metrics count the sampled rows only
    micro = micro_batches(run, kept, demos) if needs_passes else []
    extra: dict[str, torch.Tensor] = {}
    if cfg.algo.tis_cap is not None:  # the trainer's own old log-probs, once, before any update of the step
        t = cfg.train
        extra["old_logprobs"], tis_metrics = trainer_old_logprobs(
            run.model, micro, len(kept), width, temperature=cfg.rollout.temperature, chunk=t.logprob_chunk,
            shared_prompt=t.shared_prompt, packed_sequences=t.packed_sequences, cap=cfg.algo.tis_cap,
            precision=run.precision, fp32_logits=cfg.train.fp32_logits,
        )  # fmt: skip
        metrics |= tis_metrics
    kl = None
    if cfg.algo.kl_in_reward and kl_coef > 0:
        kl = reference_kl(
            run.ref_model, micro, len(kept), width, algo.kl_estimator, cfg.rollout.temperature,
            cfg.train.shared_prompt, cfg.train.packed_sequences, run.precision, cfg.train.fp32_logits,
        )  # fmt: skip
        sequence_kl = kl.sum(dim=1)
        metrics["train/kl"] = (sequence_kl.sum() / max(sum(lengths), 1)).item()
        if not algo.token_level:
            rewards = rewards - kl_coef * sequence_kl
    if not algo.token_level:
        per_token, adv_metrics = group_advantages(algo.advantage, rewards, batch.sizes, width, lengths)
        return {"advantages": per_token, **extra}, metrics | adv_metrics
    values = values_for(run.critic, micro, len(kept), width, cfg.train.shared_prompt)
    mask = torch.zeros(len(kept), width)
    for i, length in enumerate(lengths):
        mask[i, :length] = 1.0
    per_token_rewards = token_rewards(rewards.tolist(), lengths, width, kl, kl_coef)
    (adv, returns), adv_metrics = algo.advantage(per_token_rewards, values, mask)
    return {"advantages": adv, "returns": returns, "old_values": values, **extra}, metrics | adv_metrics


def group_advantages(estimator, rewards: torch.Tensor, sizes: list[int], width: int, lengths: list[int]):
    """A bound group estimator on the [B, G] rewards of groups of ``sizes``, broadcast over each
    completion's tokens [N, width]. Ragged groups go in padded with NaN (rlvr.algos.advantages)."""
    try:
        padded = ragged_rows(rewards, sizes)
        advantages, metrics = estimator(padded)
    except ValueError as err:  # e.g. a binary-reward estimator given a non-binary reward
        raise TrainingError(f"algo.advantage={estimator.name}: {err}") from None
    flat = advantages.flatten()[~padded.isnan().flatten()]  # [N] the real rows, in order
    per_token = flat.unsqueeze(1).expand(-1, width).clone()
    for i, length in enumerate(lengths):
        per_token[i, length:] = 0.0
    return per_token, metrics


def ragged_rows(values: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """[N] values of consecutive groups of ``sizes`` as [B, max(sizes)], NaN after each group's end."""
    if len(set(sizes)) == 1:
        return values.view(len(sizes), sizes[0])
    padded = values.new_full((len(sizes), max(sizes)), float("nan"))
    start = 0
    for row, size in enumerate(sizes):
        padded[row, :size] = values[start : start + size]
        start += size
    return padded


def policy_updates(
    run: Run, completions: list[Completion], per_token: dict[str, torch.Tensor], sft_coef: float = 1.0
) -> dict[str, float]:
    """``inner_epochs`` passes over the kept completions, each in ``mini_batches`` optimizer steps;
    demonstrations for the auxiliary SFT loss (rows marked ``sft``) are dealt evenly among them."""
    cfg = run.config
    rl_coef = 1.0 - sft_coef if cfg.sft.convex and sft_coef else 1.0  # CHORD's (1 - mu) L_RL + mu L_SFT
    settings = loss_settings(run, sft_coef, rl_coef)
    is_demo = per_token["sft"].sum(dim=1) > 0 if "sft" in per_token else torch.zeros(len(completions), dtype=torch.bool)
    per_update: list[dict[str, float]] = []
    parts = cfg.train.mini_batches
    rollout_rows = [i for i in range(len(completions)) if not is_demo[i]]
    demo_rows = [i for i in range(len(completions)) if is_demo[i]]
    for epoch in range(cfg.train.inner_epochs):
        rollouts, demos = list(rollout_rows), list(demo_rows)
        if parts > 1:
            random.Random(f"{cfg.train.seed}-{run.step}-{epoch}").shuffle(rollouts)
            random.Random(f"{cfg.train.seed}-{run.step}-{epoch}-demos").shuffle(demos)
        for j in range(parts):
            rows = [*share(rollouts, j, parts), *share(demos, j, parts)]
            if not rows:
                continue
            subset = {name: values[rows] for name, values in per_token.items()}
            chosen = [completions[i] for i in rows]
            if run.placement is not None and run.placement.learners is not None:  # distributed.learners > 1
                metrics = run.placement.learners.update(run, chosen, subset, settings, run.step)
            else:
                micro = micro_batches(run, chosen, subset)
                metrics = update_step(
                    run.model, run.ref_model, run.optimizer, run.scheduler, micro, settings,
                    cfg.optim.max_grad_norm, run.step,
                )  # fmt: skip
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
    keys = dict.fromkeys(k for m in per_update for k in m)  # a mean over the updates that report each
    metrics = {k: sum(m[k] for m in per_update if k in m) / sum(k in m for m in per_update) for k in keys}
    metrics["logprob_mismatch"] = per_update[0]["logprob_mismatch"]  # before any update of this step
    return {f"train/{k}" if "/" not in k else k: v for k, v in metrics.items()}


def check_mismatch(cfg: RunConfig, metrics: dict[str, float], step: int) -> None:
    """Stop when the rollout's log-probs and the learner's differ more than ``distributed.max_logprob_mismatch``:
    a weight sync that "succeeded" with wrong weights is the field's commonest silent failure."""
    bound = cfg.distributed.max_logprob_mismatch
    mismatch = metrics.get("train/logprob_mismatch", 0.0)
    if bound is not None and mismatch > bound:
        raise TrainingError(
            f"step {step}: the rollout's log-probs differ from the learner's by {mismatch:.4g} per token, above "
            f"distributed.max_logprob_mismatch={bound:g}: the rollout engine is not sampling the learner's weights"
        )


def share(rows: list[int], part: int, parts: int) -> list[int]:
    """The ``part``-th of ``parts`` consecutive, near-equal slices of ``rows``."""
    return rows[part * len(rows) // parts : (part + 1) * len(rows) // parts]


def adapt_coefficients(run: Run, metrics: dict[str, float], batch_size: int) -> None:
    """The adaptive KL coefficient (toward algo.kl_target) and entropy coefficient (toward
    algo.entropy_target) move after each step; both are saved in checkpoints."""
    algo, c = run.config.algo, run.coefficients
    if algo.kl_target is not None and "train/kl" in metrics:
        c.kl = adaptive_kl_coef(
            c.kl, metrics["train/kl"], target=algo.kl_target, horizon=algo.kl_horizon, batch_size=batch_size
        )
    if algo.entropy_target is not None and "train/entropy" in metrics:
        control = run.algorithm.entropy_controller
        c.entropy_state, c.entropy = control(c.entropy_state, metrics["train/entropy"], target=algo.entropy_target)


def length_metrics(completions: list[Completion]) -> dict[str, float]:
    lengths = [len(c.token_ids) for c in completions]
    return {
        "train/response_length": sum(lengths) / len(lengths),
        "train/response_length_max": float(max(lengths)),
        "train/truncated_frac": sum(c.finish_reason == "length" for c in completions) / len(completions),
    }


def sample_rows(batch, per_token: dict[str, torch.Tensor], cfg: RunConfig) -> list[dict]:
    rows = []
    position = {id(c): j for j, c in enumerate(batch.sampled)}
    for i, c in enumerate(batch.kept[: cfg.log.samples_per_dump]):
        if id(c) not in position:  # a replayed completion: logged in the step that sampled it
            continue
        j = position[id(c)]
        rows.append(
            {
                "id": c.example.id,
                "prompt": c.example.prompt[-1]["content"],
                "completion": c.text,
                "answer": c.example.answer,
                "reward": batch.sampled_rewards[j],
                "components": {name: None if isnan(v[j]) else v[j] for name, v in batch.components.items()},
                "advantage": per_token["advantages"][i, 0].item(),
                "finish_reason": c.finish_reason,
                "origin": c.origin,
            }
        )
    return rows


def nan_mean(values: list[float]) -> float:
    """Mean over the applicable values (NaN: a file reward's None); NaN when none applies (TRL's nanmean)."""
    kept = [v for v in values if not isnan(v)]
    return sum(kept) / len(kept) if kept else float("nan")


def run_eval(run: Run) -> dict[str, float]:
    cfg = run.config
    sampling = SamplingParams(
        max_new_tokens=cfg.eval.max_new_tokens or cfg.rollout.max_new_tokens,
        temperature=cfg.eval.temperature,
        top_p=cfg.rollout.top_p if cfg.eval.temperature > 0 else 1.0,
        stop=cfg.rollout.stop,
        return_logprobs=False,
        seed=derive_seed(cfg.train.seed, "eval", run.step),
    )
    if run.pipeline is not None:
        run.pipeline.settle()  # the batch in flight samples with the older weights: let it finish first
    run.engine.update_weights(run.model, version=run.step)
    started = time.perf_counter()
    result = evaluate(
        run.engine, run.eval_set, verifier_reward(cfg, run.verifier), sampling, cfg.eval.samples, cfg.tools, cfg.think
    )
    result.metrics["time/eval"] = time.perf_counter() - started
    run.logger.log(run.step, result.metrics)
    run.logger.print(
        f"eval at step {run.step}: accuracy {result.metrics['eval/accuracy']:.3f} on {len(run.eval_set)} held-out "
        f"problems, mean length {result.metrics['eval/response_length']:.1f} tokens"
    )
    with (run.run_dir / "eval_samples.jsonl").open("a") as handle:  # every held-out completion, each eval
        for row in result.rows:
            handle.write(json.dumps({"step": run.step, **row}) + "\n")
    return result.metrics


def rollout_sampling(cfg: RunConfig, step: int) -> SamplingParams:
    """The step's sampling; its seed makes every row's stream a function of (seed, step, prompt, sample),
    independent of batching and of how many rollout workers share the step (rlvr.rollout.seeds)."""
    return SamplingParams(
        max_new_tokens=cfg.rollout.max_new_tokens,
        temperature=cfg.rollout.temperature,
        top_p=cfg.rollout.top_p,
        stop=cfg.rollout.stop,
        seed=derive_seed(cfg.train.seed, "rollout", step),
    )


def save(run: Run) -> None:
    if run.pipeline is not None:
        run.pipeline.settle()  # the batch in flight moves the sampler, hints and RNG: save after it
    state = {name: part.state_dict() for name, part in run.state.items()}
    ckpt.save_checkpoint(run.run_dir, run.step, run.model, state, to_yaml(run.config), run.config.checkpoint.keep)


__all__ = ["train", "TrainingError"]
