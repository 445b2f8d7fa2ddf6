"""A run's set-up: the :class:`Run` record and everything built once before the first step (task,
rewards, model and reference, optimizer and schedule, rollout engine, samplers, demonstrations),
and what a resumed run restores. The loop itself is :mod:`rlvr.trainer`.
"""

import copy
import random
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import torch

from rlvr import checkpoint as ckpt
from rlvr import mixing
from rlvr.algos.compose import Algorithm, build_algorithm
from rlvr.checkpoint import Coefficients, RngState, Stateful
from rlvr.config import RunConfig, to_yaml
from rlvr.demos import DemoBank, make_bank
from rlvr.errors import ConfigError, TrainingError
from rlvr.hf_compat import enable_checkpointing
from rlvr.learner.critic import build_critic
from rlvr.metrics import MetricsLogger, truncate_after
from rlvr.models import add_lora, load_model, resolve_device
from rlvr.precision import Precision, resolve_precision
from rlvr.rewards import RewardTerm, load_reward_plugins, reward_registry
from rlvr.rewards.mix import reward_mix
from rlvr.rollout import make_engine
from rlvr.samplers import Sampler, ShuffledSampler, make_sampler
from rlvr.tasks import make_task
from rlvr.tracking import check_installed
from rlvr.types import Example


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
    verifier: str  # the reward that decides "correct"
    algorithm: Algorithm  # the loss's registered parts, hyper-parameters bound
    rewards: list[RewardTerm]  # the reward mix (shorthands expanded)
    sampler: Sampler
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    logger: MetricsLogger | None
    coefficients: Coefficients  # KL and entropy coefficients; adaptive ones move during training
    critic: torch.nn.Module | None = None  # value model, for a token-level advantage estimator
    critic_optimizer: torch.optim.Optimizer | None = None
    step: int = 0
    precision: Precision = "fp32"  # the learner's compute, train.precision resolved (rlvr.precision)
    state: dict[str, Stateful] = field(default_factory=dict)  # what a checkpoint saves besides the weights
    demos: DemoBank | None = None  # demonstrations, for SFT stages and SFT+RL mixing (rlvr.demos)
    demo_sampler: ShuffledSampler | None = None  # which demonstrations the next SFT batch takes
    relift: mixing.ReliftBuffer | None = None  # ReLIFT's prompts that RL keeps failing (rlvr.mixing)
    reward_controllers: list = field(default_factory=list)  # re-bind reward terms between steps (LASER-D's monitor)
    replay: object | None = None  # ReMix's buffer of recent groups (rlvr.samplers.replay)
    scaffold: object | None = None  # Scaf-GRPO's hints for unsolved prompts (rlvr.samplers.hints)
    pipeline: object | None = None  # max_off_policy_steps=1: the batch in flight (rlvr.distributed.pipeline)
    placement: object | None = None  # distributed.backend=ray: the learner ranks and rollout workers (rlvr.distributed)

    def close(self) -> None:
        """Close what the run holds open: its logs, demonstrations, and distributed actors (and Ray, if
        the run started it)."""
        if self.pipeline is not None and self.pipeline.thread is not None:
            self.pipeline.thread.join()  # the batch in flight ends before its workers do
        if self.logger is not None:
            self.logger.close()
        if self.demos is not None:
            self.demos.close()
        if self.placement is not None:
            from rlvr.distributed import release

            release(self.placement)

    def keep(self, name: str, part: Stateful) -> None:
        """Register a stateful part (``state_dict`` / ``load_state_dict``): checkpoints save it and
        a resumed run restores it, with no list to keep in step by hand."""
        if name in self.state:
            raise ValueError(f"checkpoint state {name!r} registered twice")
        self.state[name] = part


def setup(config: RunConfig, run_dir: Path | None, resume: bool) -> Run:
    """Build the run; if that fails, a run directory this call created is removed again (a failed
    start leaves nothing behind) and one that held a run is left as it was."""
    check_installed(config.log.backends)  # a missing tracking extra fails before the model loads
    run_dir = Path(run_dir or config.run_dir or default_run_dir(config))
    checkpoints = ckpt.list_checkpoints(run_dir)
    if not resume and checkpoints:
        raise ConfigError(f"{run_dir} already holds a run; resume it with --resume {run_dir} or pick another run_dir")
    if resume and not checkpoints:
        raise ConfigError(f"nothing to resume in {run_dir}: it has no complete checkpoint")
    created = not run_dir.exists()
    try:
        run = build_run(config, run_dir, resume, checkpoints)
    except BaseException:
        if created:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    (run_dir / "config.yaml").write_text(to_yaml(config))
    run.logger = logger = MetricsLogger.for_run(config, run_dir, resume)
    logger.print(f"run directory: {run_dir}" + (f" (resumed at step {run.step})" if resume else ""))
    logger.print(precision_line(run))
    if run.demos is not None:
        logger.print(mixing.demos_line(config, run.demos, run.train_set))
    return run


def precision_line(run: Run) -> str:
    """What computes in which precision, and what pure-bf16 storage costs (rlvr.precision)."""
    rollout = getattr(run.engine, "precision", "fp32")
    line = f"compute: learner {run.precision}, rollout {rollout} (train.precision={run.config.train.precision})"
    if run.config.model.dtype == "bfloat16" and not run.config.model.lora_rank:
        line += (
            "; model.dtype=bfloat16 stores the weights in bf16: optimizer steps below ~1/256 of a weight round"
            " away, so it learns slowly; train.precision=bf16 with float32 weights computes as fast without that"
        )
    return line


def build_run(config: RunConfig, run_dir: Path, resume: bool, checkpoints: list[Path]) -> Run:
    random.seed(config.train.seed)
    torch.manual_seed(config.train.seed)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    load_reward_plugins(config.plugins)
    algorithm = build_algorithm(config.algo, config.sft)
    task = make_task(config.task.name, **config.task.params())
    train_set, eval_set = task.split("train"), task.split("eval")[: config.eval.size]
    verifier = config.eval.verifier or task.verifier
    reward_registry(verifier)
    rewards = reward_mix(config, verifier)
    # the sampler before the model: a category key missing from the data fails in a second, not minutes
    sampler = make_sampler(train_set, config.sampler.name, config.sampler.params(), config.train.seed)

    model, ref_model, tokenizer, optimizer, scheduler = learner_parts(config)
    device, optim = next(model.parameters()).device, config.optim
    critic = None
    if config.critic.model is not None:
        critic = build_critic(
            config.critic.model, config.model.name, config.model.dtype, config.train.seed,
            next(model.parameters()).device, packed_sequences=config.train.packed_sequences,
        )  # fmt: skip
    # Re-seed once every model exists: converting a model on a cold cache draws from the RNG,
    # and the rollout stream must not depend on whether the cache was warm.
    random.seed(config.train.seed)
    torch.manual_seed(config.train.seed)
    precision = resolve_precision(config.train.precision, device)
    engine = make_engine(
        config.rollout.engine, model, tokenizer, config.rollout.batch_size, config.rollout.onednn_weights,
        resolve_precision(config.rollout.precision, device, train=precision), config.train.fp32_logits,
    )  # fmt: skip
    coefficients = Coefficients(config.algo.kl_coef, config.algo.entropy_coef, config.algo.entropy_coef)
    run = Run(
        config, run_dir, model, ref_model, tokenizer, engine, train_set, eval_set, verifier, algorithm, rewards,
        sampler, optimizer, scheduler, logger=None, coefficients=coefficients, precision=precision,
    )  # fmt: skip
    for name, part in (("optimizer", optimizer), ("scheduler", scheduler), ("sampler", sampler),
                       ("coefficients", coefficients), ("rng", RngState())):  # fmt: skip
        run.keep(name, part)
    if critic is not None:
        run.critic = critic
        run.critic_optimizer = torch.optim.AdamW(critic.parameters(), lr=config.critic.lr, betas=optim.betas)
        run.keep("critic", critic)
        run.keep("critic_optimizer", run.critic_optimizer)
    if hasattr(engine, "state_dict"):  # an engine with state of its own (a server's weight version, ...)
        run.keep("engine", engine)
    if any(s.kind == "sft" for s in config.stages) or config.sft.mixes:
        run.demos = make_bank(config, train_set, tokenizer)
        mixing.check_matches(config, run.demos, train_set)
        run.demo_sampler = ShuffledSampler(len(run.demos), config.train.seed + 1)
        run.keep("demo_sampler", run.demo_sampler)
        if config.sft.relift_size:
            run.relift = mixing.ReliftBuffer()
            run.keep("relift", run.relift)
    if config.replay.groups:
        from rlvr.samplers.replay import ReplayBuffer

        r = config.replay
        run.replay = ReplayBuffer(r.groups, r.capacity, r.reuse, r.max_staleness, r.until_step)
        run.keep("replay", run.replay)
    if config.hints.enabled:
        from rlvr.samplers.hints import HintScaffold

        h = config.hints
        run.scaffold = HintScaffold(h.after, h.start, h.samples, h.prefix)
        run.keep("hints", run.scaffold)
    if config.distributed.max_off_policy_steps:  # step k+1's batch generates while step k trains
        from rlvr.distributed.pipeline import Pipeline

        run.pipeline = Pipeline()
        run.keep("pipeline", run.pipeline)
    for spec in config.rewards:
        if spec.name == "laser_d":  # LASER-D: the targets move with the policy (rlvr.rewards.laser_d)
            from rlvr.rewards.laser_d import LaserDMonitor

            monitor = LaserDMonitor(spec.params(), config.rollout.group_size)
            run.reward_controllers.append(monitor)
            run.keep("laser_d", monitor)
    run_dir.mkdir(parents=True, exist_ok=True)
    if resume:
        restore(run, checkpoints[-1])  # truncates the JSONL files: open them only afterwards
    if config.distributed.backend == "ray":  # after the restore: the other ranks copy rank 0's state
        from rlvr.distributed import place

        run.placement = place(run)
    return run


def learner_parts(config: RunConfig):
    """The policy (LoRA and checkpointing applied, on its device, in train mode), the frozen reference
    (None without KL), the tokenizer, AdamW and the learning-rate schedule: what every learner rank
    builds (rlvr.distributed.learner), the driver as rank 0."""
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
        enable_checkpointing(model)
    model.train()
    optimizer = make_optimizer(config, model)
    return model, ref_model, tokenizer, optimizer, make_scheduler(config, optimizer)


def make_optimizer(config: RunConfig, model) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters (also over an FSDP2 rank's shards: rlvr.distributed.sharding)."""
    params = [p for p in model.parameters() if p.requires_grad]
    device = params[0].device
    optim = config.optim
    # fused: one kernel over all parameters (CPU and CUDA) instead of ~10 passes; it takes no mix of FSDP2's
    # sharded parameters and replicated ones, which then step one by one
    from torch.distributed.tensor import DTensor

    mixed = any(isinstance(p, DTensor) for p in params)
    fused = device.type in ("cpu", "cuda") and not mixed
    return torch.optim.AdamW(
        params, lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay, fused=fused,
        foreach=False if mixed else None,
    )  # fmt: skip


def make_scheduler(config: RunConfig, optimizer):
    optim = config.optim
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(optim.schedule, optim.warmup_steps, mixing.total_updates(config))
    )


def restore(run: Run, checkpoint: Path) -> None:
    """Everything a step depends on, as it was when ``checkpoint`` was written."""
    state = ckpt.load_checkpoint(checkpoint, run.model)
    missing = [name for name in run.state if name not in state]
    if missing:
        raise TrainingError(f"checkpoint {checkpoint} lacks the state of {', '.join(missing)}; it is from another run")
    for name, part in run.state.items():
        part.load_state_dict(state[name])
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
