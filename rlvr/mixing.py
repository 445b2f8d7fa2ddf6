"""Stages and demonstrations in the training loop: SFT steps, and SFT+RL mixing (docs/sft.md).

- **Stages** (``stages: [{kind: sft, steps: 30}, {kind: rl, steps: 20}]``): one run directory, one
  step counter, one metrics stream, one optimizer; the stage of a step follows from its number, so
  ``--resume`` continues across a stage boundary like anywhere else. Held-out eval runs between stages.
- **An SFT step** (:func:`sft_step`): ``sft.batch_size`` demonstrations, one optimizer step of
  ``sft.loss`` through the RL update's own code (:func:`rlvr.learner.update.update_step`: the
  same packed completions, shared prompts, micro-batches and precision).
- **Mixing during RL steps**, each switchable and combinable:

  - ``sft.coef`` > 0: an auxiliary SFT loss on ``sft.batch_size`` demonstrations beside the RL loss
    in the same optimizer step, its weight constant or decaying (``sft.coef_schedule``; CHORD-mu), its
    tokens weighted by ``sft.loss`` (``chord_phi``: CHORD-phi; Zhang et al. 2025, arXiv 2508.11408);
  - ``sft.group_demos`` > 0: the prompt's demonstration in its GRPO group, an off-policy member with
    LUFFY's shaped, unclipped loss (Yan et al. 2025, arXiv 2504.14945; :mod:`rlvr.demos.guided`);
  - ``sft.prefix_rollouts`` > 0: rollouts continuing a prefix of the demonstration, the prefix not
    trained (Prefix-RFT, Huang et al. 2025, arXiv 2507.01679; :mod:`rlvr.demos.guided`);
  - ``sft.relift_size`` > 0: ReLIFT (Ma et al. 2025, "Learning What Reinforcement Learning Can't",
    arXiv 2506.07527): prompts whose whole group failed and that have a demonstration gather in a
    buffer; when it holds ``relift_size``, one SFT update on their demonstrations follows that RL step.

Limits: a stage's learning rate replaces ``optim.lr`` under the run's one schedule (counted in RL
updates and SFT steps; ReLIFT's extra updates run at the current rate and do not advance it);
demonstrations are matched to prompts by the last user message's text; a step whose groups all
agree under dynamic sampling makes no update, so its auxiliary SFT loss is skipped too.
"""

import time
from dataclasses import dataclass

import torch

from rlvr.algos.sft import sft_coefficient
from rlvr.config_sft import Stage
from rlvr.demos import prompt_key
from rlvr.errors import ConfigError
from rlvr.learner.microbatch import forwarded_tokens
from rlvr.learner.passes import token_width
from rlvr.learner.settings import loss_settings, micro_batches
from rlvr.learner.update import update_step
from rlvr.types import Completion


@dataclass(frozen=True)
class StageSpan:
    index: int
    kind: str  # "sft" | "rl"
    start: int  # the last step before the stage (0 for the first)
    end: int  # the stage's last step
    lr: float | None


def stages_of(cfg) -> list[StageSpan]:
    """The run's stages as step spans; without ``stages``, one RL stage of ``train.steps``."""
    specs = cfg.stages or [Stage(kind="rl", steps=cfg.train.steps)]
    spans, start = [], 0
    for i, stage in enumerate(specs):
        spans.append(StageSpan(i, stage.kind, start, start + stage.steps, stage.lr))
        start += stage.steps
    return spans


def stage_at(cfg, step: int) -> StageSpan:
    """The stage that step ``step`` (1-based) belongs to."""
    return next(span for span in stages_of(cfg) if span.start < step <= span.end)


def enter_stage(run, stage: StageSpan) -> None:
    """This stage's learning rate under the run's schedule (set every step, so a resumed run has it)."""
    lr = stage.lr or run.config.optim.lr
    scheduler = run.scheduler
    if scheduler.base_lrs == [lr] * len(scheduler.base_lrs):
        return
    scheduler.base_lrs = [lr] * len(scheduler.base_lrs)
    factor = scheduler.lr_lambdas[0](scheduler.last_epoch)
    for group in run.optimizer.param_groups:
        group["lr"] = lr * factor


def updates_per_step(cfg, kind: str) -> int:
    return 1 if kind == "sft" else cfg.train.inner_epochs * cfg.train.mini_batches


def total_updates(cfg) -> int:
    """Optimizer updates the run's schedule spans: one per SFT step, inner epochs x mini-batches per RL step."""
    return sum((span.end - span.start) * updates_per_step(cfg, span.kind) for span in stages_of(cfg))


def sft_step(run) -> dict[str, float]:
    """One supervised step: the next ``sft.batch_size`` demonstrations, one optimizer step."""
    started = time.perf_counter()
    cfg = run.config
    demos = [run.demos.completion(i) for i in run.demo_sampler.next(cfg.sft.batch_size)]
    metrics = demo_update(run, demos)
    elapsed = time.perf_counter() - started
    if cfg.log.samples_every and run.step % cfg.log.samples_every == 0:  # what the step trained on, readable
        run.logger.log_samples(run.step, [demo_sample(c) for c in demos[: cfg.log.samples_per_dump]])
    forwarded = forwarded_tokens(demos, cfg.train.shared_prompt)
    return metrics | {
        "train/lr": run.scheduler.get_last_lr()[0],
        "time/step": elapsed,
        "time/update": elapsed,
        "throughput/update_tokens_per_s": forwarded / max(elapsed, 1e-9),
    }


def demo_sample(c: Completion) -> dict:
    """A demonstration as a samples.jsonl row (no reward or advantage: it was not sampled)."""
    return {
        "id": c.example.id, "prompt": prompt_key(c.example), "completion": c.text,
        "answer": c.example.answer, "reward": None, "components": {}, "advantage": None,
        "finish_reason": c.finish_reason, "origin": c.origin,
    }  # fmt: skip


def demo_update(run, demos: list[Completion], step_scheduler: bool = True) -> dict[str, float]:
    """One optimizer step of the SFT loss alone on ``demos``; metrics under ``sft/``. ReLIFT's updates
    do not step the learning-rate schedule (it counts the run's SFT and RL steps)."""
    width = token_width(demos)
    per_token = {"advantages": torch.zeros(len(demos), width), "sft": torch.ones(len(demos), width)}
    cfg = run.config
    metrics = update_step(
        run.model, run.ref_model, run.optimizer, run.scheduler, micro_batches(run, demos, per_token),
        loss_settings(run, sft_coef=1.0), cfg.optim.max_grad_norm, run.step, step_scheduler,
    )  # fmt: skip
    return {
        "sft/loss": metrics["loss/total"],
        "sft/nll": metrics["sft/nll"],
        "sft/grad_norm": metrics["grad_norm"],
        "sft/demos": float(len(demos)),
        "sft/tokens": float(sum(sum(c.loss_mask) for c in demos)),
        "sft/truncated_frac": sum(c.finish_reason == "length" for c in demos) / len(demos),
        **{k: v for k, v in metrics.items() if k.startswith("sft/") and k != "sft/nll"},
    }


def with_auxiliary_demos(run, completions: list[Completion], per_token: dict[str, torch.Tensor]):
    """The RL step's completions plus, with ``sft.coef`` > 0, ``sft.batch_size`` demonstrations for the
    auxiliary SFT loss (rows marked ``sft``); returns (completions, per_token, the SFT weight)."""
    cfg = run.config
    span = stage_at(cfg, run.step)
    s = cfg.sft
    steps = span.end - span.start
    coef = sft_coefficient(
        run.step, coef=s.coef, final=s.coef_final, schedule=s.coef_schedule, start=span.start, steps=steps
    )
    if not coef or run.demos is None:
        return completions, per_token, 0.0
    demos = [run.demos.completion(i) for i in run.demo_sampler.next(s.batch_size)]
    rows = completions + demos
    width = token_width(rows)
    extended = {}
    for name, values in per_token.items():
        grown = torch.zeros(len(rows), width, dtype=values.dtype)
        grown[: values.shape[0], : values.shape[1]] = values
        extended[name] = grown
    extended.setdefault("sft", torch.zeros(len(rows), width))
    extended["sft"][len(completions) :] = 1.0
    return rows, extended, coef


def off_policy_rows(completions: list[Completion], width: int) -> torch.Tensor:
    """[N, width] 1.0 on the rows of demonstrations that sit in a group (LUFFY's off-policy members)."""
    rows = torch.tensor([float(c.origin == "demo") for c in completions])
    return rows.unsqueeze(1).expand(-1, width).clone()


def guided_metrics(batch, verifier: str) -> dict[str, float]:
    """Reward and accuracy of the demonstrations and prefix-guided rollouts in the step's groups."""
    out = {}
    for origin, name in (("demo", "mix/demo"), ("prefix", "mix/prefix")):
        rows = [i for i, c in enumerate(batch.sampled) if c.origin == origin]
        if rows:
            out[f"{name}_rollouts"] = float(len(rows))
            out[f"{name}_reward"] = sum(batch.sampled_rewards[i] for i in rows) / len(rows)
            out[f"{name}_accuracy"] = sum(batch.components[verifier][i] >= 1.0 for i in rows) / len(rows)
    return out


class ReliftBuffer:
    """ReLIFT's buffer: demonstrations of prompts whose sampled group was all wrong, in arrival order."""

    def __init__(self) -> None:
        self.rows: list[int] = []  # indices into the run's DemoBank

    def state_dict(self) -> dict:
        return {"rows": list(self.rows)}

    def load_state_dict(self, state: dict) -> None:
        self.rows = list(state["rows"])


def relift_after(run, batch) -> dict[str, float]:
    """Add this step's failed prompts that have a demonstration; an SFT update once ``sft.relift_size`` gathered."""
    size = run.config.sft.relift_size
    failed = 0
    for result in batch.results:  # each group's own sampled rollouts (not demonstrations, prefixes or hinted)
        if result.correct and not any(result.correct):
            row = run.demos.find(run.train_set[result.index])
            if row is not None and row not in run.relift.rows:
                run.relift.rows.append(row)
                failed += 1
    metrics = {"relift/added": float(failed), "relift/buffer": float(len(run.relift.rows))}
    if len(run.relift.rows) >= size:
        rows, run.relift.rows = run.relift.rows[:size], run.relift.rows[size:]
        sft = demo_update(run, [run.demos.completion(i) for i in rows], step_scheduler=False)
        metrics |= {"relift/sft_update": 1.0, "relift/nll": sft["sft/nll"]}
        metrics["relift/buffer"] = float(len(run.relift.rows))
    else:
        metrics["relift/sft_update"] = 0.0
    return metrics


def check_matches(cfg, demos, train_set) -> None:
    """LUFFY, Prefix-RFT and ReLIFT use the demonstrations of training prompts: none matching is an error."""
    if (cfg.sft.group_demos or cfg.sft.prefix_rollouts or cfg.sft.relift_size) and not demos.matched(train_set):
        raise ConfigError(
            f"none of the {len(demos)} demonstrations ({demos_source(cfg)}) matches a training prompt (matched by "
            "the last user message's text): sft.group_demos, sft.prefix_rollouts and sft.relift_size need some"
        )


def demos_line(cfg, demos, train_set) -> str:
    """How many demonstrations, from where, and how many training prompts have one."""
    prompts = len({prompt_key(e) for e in train_set})
    return (
        f"demonstrations: {len(demos)} ({demos_source(cfg)}); "
        f"{demos.matched(train_set)} of the {prompts} distinct training prompts have one"
    )


def demos_source(cfg) -> str:
    return cfg.demos.path or f"generated for task {cfg.task.name!r}"
