"""The TRL contender: ``trl.GRPOTrainer`` set up like the rlvr run it is compared with.

Same as rlvr: the model object (rlvr's ``load_model``: same weights, dtype and tokenizer), the
prompts in the order rlvr's sampler draws them (rendered by the same chat template), group size,
prompts per step (one generation batch and one optimizer step per step), max new tokens,
temperature, top-p, learning rate and constant schedule, Adam's beta2, clip range, gradient-norm
clip, KL coefficient (0 in the default recipe), seed, threads, and the reward functions
themselves (rlvr's, through a thin adapter, weighted by TRL's ``reward_weights``).

Left at TRL's defaults (recorded in the JSON): notably ``gradient_checkpointing=True``,
``loss_type="dapo"`` (token-level normalization, as rlvr's ``token_mean``), ``top_k=0``.

Timing: a callback marks each step (``on_step_begin`` -> ``on_step_end``: generation, rewards,
advantages, forward, backward, optimizer step; not TRL's logging). Generation time and token
counts come from wrapping the trainer's ``_generate`` (a private method: where a TRL version
lacks it, the rollout split is left out); reward time from the adapters. ``time/update`` is the
step minus generation and rewards.
"""

import tempfile
import time

from transformers import TrainerCallback

from rlvr.bench.probe import Channel, memory_report, model_info, reset_peak, synchronize
from rlvr.errors import ConfigError

# TRL's settings recorded in the JSON: the ones that matter for speed and memory.
RECORDED = [
    "gradient_checkpointing", "per_device_train_batch_size", "gradient_accumulation_steps", "steps_per_generation",
    "generation_batch_size", "num_generations", "num_iterations", "max_completion_length", "temperature", "top_p",
    "top_k", "loss_type", "scale_rewards", "beta", "epsilon", "epsilon_high", "learning_rate", "lr_scheduler_type",
    "adam_beta1", "adam_beta2", "optim", "max_grad_norm", "bf16", "fp16", "use_cpu", "use_vllm", "use_liger_kernel",
    "torch_compile", "disable_dropout", "mask_truncated_completions", "reward_weights", "seed",
]  # fmt: skip


class StepClock(TrainerCallback):
    """Times TRL's steps and blocks between them for the parent."""

    def __init__(self, channel: Channel, device) -> None:
        self.channel, self.device = channel, device
        self.ready = self.reset = False
        self.rollout = self.reward = 0.0
        self.generated = self.prompt_tokens = 0
        self.started = 0.0

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if not self.ready:
            self.ready = True
            self.channel.send("ready", device=str(self.device), **model_info(model))
            self.reset = reset_peak(self.device)
        if not self.channel.wait():
            raise SystemExit(0)
        self.rollout = self.reward = 0.0
        self.generated = self.prompt_tokens = 0
        self.started = time.perf_counter()
        return control

    def on_step_end(self, args, state, control, **kwargs):
        synchronize(self.device)
        step = time.perf_counter() - self.started
        metrics = {"time/step": step, "time/reward": self.reward}
        if self.generated:
            metrics |= {
                "time/rollout": self.rollout,
                "time/update": step - self.rollout - self.reward,
                "tokens/generated": float(self.generated),
                "tokens/trained": float(self.generated),  # every completion token is in TRL's loss
                "tokens/forwarded": float(self.generated + self.prompt_tokens),
            }
        self.channel.send("step", wall=step, metrics=metrics)
        return control


def reward_adapter(name: str, fn, examples: list, clock: StepClock):
    """rlvr's ``fn(completion, example)`` (hyper-parameters bound) as TRL's ``fn(prompts, completions,
    **columns) -> list[float]``; the dataset's ``example`` column holds each row's index into rlvr's
    train split. TRL gives the completion's text only: it is wrapped as a single-turn Completion."""
    from rlvr.rewards import as_completion

    def reward(prompts, completions, example, **_):
        started = time.perf_counter()
        texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
        values = [float(fn(as_completion(t, examples[i]), examples[i])) for t, i in zip(texts, example, strict=True)]
        clock.reward += time.perf_counter() - started
        return values

    reward.__name__ = name
    return reward


def time_generation(trainer, clock: StepClock) -> None:
    """Wrap ``trainer._generate`` (returns prompt ids, completion ids trimmed after eos, ...)."""
    original = getattr(trainer, "_generate", None)
    if original is None:
        return

    def timed(prompts, *args, **kwargs):
        started = time.perf_counter()
        out = original(prompts, *args, **kwargs)
        synchronize(clock.device)
        clock.rollout += time.perf_counter() - started
        clock.prompt_tokens += sum(len(ids) for ids in out[0])
        clock.generated += sum(len(ids) for ids in out[1])
        return out

    trainer._generate = timed


def trl_child(spec: dict, channel: Channel) -> None:
    import random

    import torch

    try:
        import trl
        from datasets import Dataset
        from trl import GRPOConfig, GRPOTrainer
    except ImportError as err:
        raise ConfigError(f"TRL is not installed ({err}): pip install 'rlvr[bench]'") from None
    from rlvr.config import load_config
    from rlvr.models import load_model, resolve_device
    from rlvr.rewards import REWARDS, load_reward_plugins
    from rlvr.samplers import ShuffledSampler
    from rlvr.tasks import make_task

    config = load_config(spec["recipe"], spec["overrides"])
    if config.model.lora_rank:
        raise ConfigError("the TRL contender does not mirror LoRA (model.lora_rank > 0)")
    torch.set_num_threads(spec["threads"])
    seed, rollout = config.train.seed, config.rollout
    random.seed(seed)
    torch.manual_seed(seed)
    load_reward_plugins(config.plugins)
    task = make_task(config.task.name, **config.task.params())
    examples = task.split("train")
    sampler = ShuffledSampler(len(examples), seed)
    order = [i for _ in range(spec["total_steps"]) for i in sampler.next(rollout.prompts_per_step)]
    dataset = Dataset.from_list([{"prompt": examples[i].prompt, "example": i} for i in order])
    model, tokenizer = load_model(config.model.name, config.model.dtype, seed=seed)
    device = resolve_device(config.train.device)
    clock = StepClock(channel, device)
    if any(r.name not in REWARDS for r in config.rewards):
        raise ConfigError("rlvr bench: TRL's contender takes per-completion rewards only (no group rewards)")
    rewards = [reward_adapter(r.name, REWARDS.bind(r.name, r.params()), examples, clock) for r in config.rewards]
    clip = config.algo.policy_loss.params()
    with tempfile.TemporaryDirectory(prefix="rlvr-bench-trl-") as tmp:
        args = GRPOConfig(
            output_dir=tmp,
            per_device_train_batch_size=rollout.prompts_per_step * rollout.group_size,
            gradient_accumulation_steps=1,
            num_generations=rollout.group_size,
            max_completion_length=rollout.max_new_tokens,
            temperature=rollout.temperature,
            top_p=rollout.top_p,
            learning_rate=config.optim.lr,
            lr_scheduler_type="constant",
            adam_beta2=config.optim.betas[1],
            weight_decay=config.optim.weight_decay,
            max_grad_norm=config.optim.max_grad_norm,
            epsilon=clip.get("clip_low", 0.2),  # the policy loss's own bounds (ppo_clip's defaults otherwise)
            epsilon_high=clip.get("clip_high", 0.2),
            beta=config.algo.kl_coef,
            num_iterations=config.train.inner_epochs,
            reward_weights=[r.weight for r in config.rewards],
            max_steps=spec["total_steps"],
            shuffle_dataset=False,  # rlvr's order, rlvr's prompts
            seed=seed,
            use_cpu=device.type == "cpu",
            bf16=spec.get("precision") == "bf16",  # TRL's own mixed precision (autocast), as rlvr's train.precision
            logging_steps=1,
            report_to=[],
            save_strategy="no",
            disable_tqdm=True,
            dataloader_num_workers=0,
        )
        trainer = GRPOTrainer(
            model=model, reward_funcs=rewards, args=args, train_dataset=dataset, processing_class=tokenizer
        )
        trainer.add_callback(clock)
        time_generation(trainer, clock)
        trainer.train()
        settings = {key: getattr(args, key, None) for key in RECORDED}
    channel.wait()  # the parent's stop
    memory = memory_report(device, clock.reset)
    channel.send("done", memory=memory, trl={"version": trl.__version__, "settings": settings})
