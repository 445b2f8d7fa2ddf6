"""One validated config tree: a YAML recipe plus ``key=value`` overrides.

Every section is a pydantic model that forbids unknown keys, so a typo is caught at load
time with the closest valid names. Task and reward parameters are checked against the
signature of the function they will be passed to (tasks and rewards are user-extensible,
so their keys are not known to this module). Messages are one line and name the key.
"""

import inspect
from difflib import get_close_matches
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rlvr.errors import ConfigError

RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
DEFAULT_RECIPE = "grpo"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(Section):
    name: str = "smollm2-135m-instruct"  # embedded default | tiny-random | HF id | local dir
    dtype: Literal["float32", "bfloat16"] = "float32"
    lora_rank: int = Field(0, ge=0)  # 0: full fine-tuning; >0: LoRA adapters through PEFT
    lora_alpha: float = Field(32.0, gt=0)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    lora_target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    gradient_checkpointing: bool = False


class TaskConfig(BaseModel):
    """``name`` picks a registered task; every other key is passed to its factory."""

    model_config = ConfigDict(extra="allow")
    name: str = "arithmetic"

    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class RewardSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    weight: float = 1.0


class RolloutConfig(Section):
    engine: Literal["hf", "fast"] = "fast"  # fast: rlvr's KV-cache decode loop (rlvr.rollout.fast); hf: generate
    prompts_per_step: int = Field(4, ge=1)
    group_size: int = Field(8, ge=2)  # G completions per prompt
    max_new_tokens: int = Field(48, ge=1)
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    stop: list[str] = []  # extra stop strings besides the tokenizer's eos
    batch_size: int = Field(64, ge=1)  # sequences generated together
    onednn_weights: bool = True  # fast engine on CPU: linears on oneDNN-reordered weights (rlvr.cpu.onednn)
    dynamic_sampling: bool = False  # DAPO: drop groups whose rewards all agree, sample more prompts
    max_sampling_rounds: int = Field(3, ge=1)  # bound on rounds per step when dynamic_sampling is on


class ToolsConfig(Section):
    """Multi-turn rollouts with a tool (rlvr.envs); env none: single-turn."""

    env: str = "none"  # none | python | search | an env registered by a plugin
    max_turns: int = Field(4, ge=1)  # model turns per episode
    max_total_tokens: int = Field(512, ge=1)  # model + tool tokens after the prompt
    workers: int = Field(8, ge=1)  # tool calls run concurrently
    timeout_s: float = Field(5.0, gt=0)  # python: wall clock per call
    memory_mb: int = Field(512, ge=64)  # python: address-space limit of the sandbox
    max_output_chars: int = Field(1000, ge=16)  # tool output shown to the model
    top_k: int = Field(3, ge=1)  # search: documents per query
    cost: Literal["none", "per_call", "otc"] = "none"  # tool-call cost in the reward
    cost_coef: float = Field(0.05, ge=0)  # per_call: reward subtracted per call
    otc_c: float = Field(1.0, gt=0)  # otc: the smoothing constant c of OTC's cosine branch


class AlgoConfig(Section):
    advantage: str = "grpo"  # see `rlvr recipes` and docs/algorithms.md; gae needs critic.model
    policy_loss: str = "ppo_clip"
    aggregation: str = "token_mean"
    clip_low: float = Field(0.2, gt=0, lt=1)  # ratio clipped to [1 - clip_low, 1 + clip_high]
    clip_high: float = Field(0.2, gt=0)
    dual_clip_c: float = Field(3.0, gt=1)  # dual_clip: bound on the loss for negative advantages
    cispo_clip_low: float = Field(1.0, ge=0)  # cispo: IS weight clipped to [1 - low, 1 + high]
    cispo_clip_high: float = Field(0.28, gt=0)
    std_eps: float = Field(1e-4, gt=0)  # added to standard deviations before dividing
    pass_k: int = Field(4, ge=1)  # pass_k advantage: the k it optimizes
    kl_coef: float = Field(0.0, ge=0)  # 0: no reference model is loaded
    kl_estimator: str = "k3"
    kl_in_reward: bool = False  # subtract kl_coef x sequence KL from the reward instead of adding it to the loss
    kl_target: float | None = Field(None, gt=0)  # adaptive coefficient (Ziegler et al. 2019) toward this KL
    kl_horizon: int = Field(10_000, ge=1)
    entropy_coef: float = Field(0.0, ge=0)  # entropy bonus in the loss
    entropy_target: float | None = Field(None, gt=0)  # adapt entropy_coef to hold entropy here
    entropy_rate: float = Field(1e-3, gt=0)  # proportional controller's gain
    entropy_controller: Literal["proportional", "skywork"] = "proportional"  # skywork: fixed steps, bonus below target
    overlong_cache_tokens: int = Field(0, ge=0)  # DAPO soft overlong penalty over the last N tokens; 0: off
    tis_cap: float | None = Field(None, gt=0)  # truncated importance sampling of trainer vs rollout log-probs


class CriticConfig(Section):
    """A learned value model for PPO with GAE (``algo.advantage: gae``)."""

    model: str | None = None  # "policy": the policy's starting weights plus a value head; or a model name
    lr: float = Field(1e-5, gt=0)
    value_clip: float = Field(0.2, gt=0)
    gamma: float = Field(1.0, gt=0, le=1)
    lam: float = Field(0.95, ge=0, le=1)


class OptimConfig(Section):
    lr: float = Field(1e-5, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.99)
    max_grad_norm: float = Field(1.0, gt=0)
    warmup_steps: int = Field(0, ge=0)
    schedule: Literal["constant", "linear", "cosine"] = "constant"


class TrainConfig(Section):
    steps: int = Field(40, ge=1)
    inner_epochs: int = Field(1, ge=1)  # passes over each step's rollouts
    mini_batches: int = Field(1, ge=1)  # optimizer steps per inner epoch
    micro_batch_size: int = Field(8, ge=1)  # sequences per forward/backward (gradient accumulation)
    micro_batch_tokens: int = Field(0, ge=0)  # and at most this many tokens per micro-batch (0: rows only)
    shared_prompt: bool = True  # forward each group's prompt once in the update; completions attend to it
    packed_sequences: bool = True  # completions run through the update without padding (attention per row)
    logprob_chunk: int = Field(1024, ge=0)  # tokens per chunk of the LM head + log-softmax; 0: all at once
    seed: int = 0
    threads: int = Field(0, ge=0)  # torch CPU threads; 0 = all cores
    reuse_freed_memory: bool = True  # CPU: glibc keeps freed memory for reuse (no page faults per tensor)
    device: str = "auto"  # auto: cuda when available, else cpu; or cpu, cuda, cuda:1, mps


class EvalConfig(Section):
    every: int = Field(0, ge=0)  # steps between held-out evals; 0: only before and after
    before: bool = True  # evaluate the starting model at step 0
    size: int = Field(200, ge=1)  # held-out problems
    samples: int = Field(1, ge=1)  # completions per problem (pass@k needs samples >= k)
    temperature: float = Field(0.0, ge=0)  # 0: greedy
    max_new_tokens: int | None = None  # None: same as rollout
    batch_size: int = Field(64, ge=1)
    verifier: str | None = None  # reward that decides "correct"; None: the task's own


class LogConfig(Section):
    samples_every: int = Field(5, ge=0)  # steps between sample dumps to samples.jsonl; 0: never
    samples_per_dump: int = Field(8, ge=1)
    tensorboard: bool = True
    console: bool = True


class CheckpointConfig(Section):
    every: int = Field(0, ge=0)  # steps between checkpoints; 0: only at the end
    keep: int = Field(2, ge=1)  # most recent checkpoints kept
    export_final: bool = True  # write final/ in Hugging Face format


class RunConfig(Section):
    recipe: str = DEFAULT_RECIPE
    run_dir: str | None = None  # default: runs/<recipe>-<timestamp>
    plugins: list[str] = []  # modules or .py files that register tasks/rewards
    model: ModelConfig = ModelConfig()
    task: TaskConfig = TaskConfig()
    rewards: list[RewardSpec] = [RewardSpec(name="math", weight=1.0), RewardSpec(name="boxed_format", weight=0.2)]
    rollout: RolloutConfig = RolloutConfig()
    tools: ToolsConfig = ToolsConfig()
    algo: AlgoConfig = AlgoConfig()
    critic: CriticConfig = CriticConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    log: LogConfig = LogConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()

    @model_validator(mode="after")
    def _check_combinations(self) -> "RunConfig":
        if not self.rewards:
            raise ValueError("rewards: at least one reward is needed")
        algo, critic = self.algo, self.critic
        if algo.advantage == "gae" and critic.model is None:
            raise ValueError("algo.advantage=gae needs a value model: set critic.model (e.g. critic.model=policy)")
        if algo.advantage != "gae" and critic.model is not None:
            raise ValueError(f"critic.model is set but algo.advantage={algo.advantage} does not use a value model")
        if algo.advantage == "pass_k" and algo.pass_k > self.rollout.group_size:
            raise ValueError(f"algo.pass_k={algo.pass_k} exceeds rollout.group_size={self.rollout.group_size}")
        if algo.advantage in ("pass_k", "bnpo"):
            shaped = [f"{r.name} x {r.weight:g}" for r in self.rewards]
            if len(self.rewards) != 1 or self.rewards[0].weight != 1.0 or algo.overlong_cache_tokens:
                raise ValueError(
                    f"algo.advantage={algo.advantage} needs 0/1 rewards: one reward with weight 1 and no "
                    f"overlong shaping (got {' + '.join(shaped)})"
                )
        if self.tools.cost != "none" and self.tools.env == "none":
            raise ValueError(f"tools.cost={self.tools.cost} needs a tool: set tools.env (python or search)")
        if self.tools.env != "none" and self.tools.max_total_tokens < self.rollout.max_new_tokens:
            raise ValueError(
                f"tools.max_total_tokens={self.tools.max_total_tokens} is below one turn's "
                f"rollout.max_new_tokens={self.rollout.max_new_tokens}"
            )
        if algo.kl_target is not None and algo.kl_coef == 0:
            raise ValueError("algo.kl_target adapts algo.kl_coef, which is 0: set an initial algo.kl_coef > 0")
        if algo.entropy_target is not None and algo.entropy_coef == 0:
            raise ValueError("algo.entropy_target adapts algo.entropy_coef: set an initial algo.entropy_coef > 0")
        if algo.overlong_cache_tokens >= self.rollout.max_new_tokens:
            raise ValueError(
                f"algo.overlong_cache_tokens={algo.overlong_cache_tokens} must be below "
                f"rollout.max_new_tokens={self.rollout.max_new_tokens}"
            )
        steps_per_batch = self.rollout.prompts_per_step * self.rollout.group_size
        if steps_per_batch % self.train.mini_batches:
            raise ValueError(
                f"train.mini_batches={self.train.mini_batches} must divide the "
                f"{steps_per_batch} completions per step (prompts_per_step x group_size)"
            )
        return self


def split_recipe_and_overrides(recipe: str | None, overrides: list[str]) -> tuple[str | None, list[str]]:
    """argparse puts a lone ``key=value`` into the recipe slot; move it back."""
    if recipe is not None and "=" in recipe:
        return None, [recipe, *overrides]
    return recipe, overrides


def recipe_path(name_or_path: str) -> Path:
    """A recipe by name (``grpo``) from recipes/, or a YAML file path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"recipe file not found: {path}")
        return path
    path = RECIPES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        names = available_recipes()
        close = get_close_matches(name_or_path, names, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown recipe {name_or_path!r}.{hint} Available: {', '.join(names)}")
    return path


def available_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def load_config(recipe: str | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read a recipe (name or path; the default recipe if None), apply overrides, validate."""
    path = recipe_path(recipe or DEFAULT_RECIPE)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})".replace("\n", " ")) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a recipe must be a mapping of sections, got {type(raw).__name__}")
    raw.setdefault("recipe", path.stem)
    for override in overrides or []:
        apply_override(raw, override)
    return validate(raw, source=str(path))


def validate(raw: dict[str, Any], source: str = "config") -> RunConfig:
    """Validate a raw dict into a RunConfig, turning pydantic's errors into one line."""
    try:
        config = RunConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{source}: {_describe(err)}") from None
    check_plugin_params(config)
    return config


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Set ``a.b.c=value`` in the raw tree; the value is parsed as YAML (``3``, ``true``, ``[a, b]``)."""
    key, sep, text = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {override!r} is not of the form key=value")
    try:
        value = yaml.safe_load(text) if text else ""
    except yaml.YAMLError:
        value = text
    node = raw
    parts = key.split(".")
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {key}: {'.'.join(parts[: depth + 1])} is not a section")
        node = child
    node[parts[-1]] = value


def _describe(err: ValidationError) -> str:
    first = err.errors()[0]
    loc = [str(part) for part in first["loc"]]
    key = ".".join(loc) or "config"
    if first["type"] == "extra_forbidden":
        valid = _valid_keys(loc[:-1])
        close = get_close_matches(loc[-1], valid, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        return f"unknown key {key!r}.{hint} Valid keys here: {', '.join(valid)}"
    value = first.get("input")
    if first["type"] == "value_error":
        return first["msg"].removeprefix("Value error, ")
    expected = first["msg"]
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{key}={value!r}: {expected}{more}"


def _valid_keys(loc: list[str]) -> list[str]:
    model: Any = RunConfig
    for part in loc:
        if part.isdigit():
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        model = next((a for a in (annotation, *args) if inspect.isclass(a) and issubclass(a, BaseModel)), None)
        if model is None:
            return []
    return sorted(model.model_fields)


def check_plugin_params(config: RunConfig) -> None:
    """Check every registry name and the task's keys, so a typo fails at load, not mid-run."""
    from rlvr.algos import ADVANTAGES, AGGREGATIONS, KL_ESTIMATORS, POLICY_LOSSES
    from rlvr.rewards import REWARDS, load_reward_plugins
    from rlvr.tasks import check_task_params

    load_reward_plugins(config.plugins)
    check_task_params(config.task.name, config.task.params())
    named = [
        *([("algo.advantage", ADVANTAGES, config.algo.advantage)] if config.algo.advantage != "gae" else []),
        ("algo.policy_loss", POLICY_LOSSES, config.algo.policy_loss),
        ("algo.aggregation", AGGREGATIONS, config.algo.aggregation),
        ("algo.kl_estimator", KL_ESTIMATORS, config.algo.kl_estimator),
        *((f"rewards[{i}].name", REWARDS, spec.name) for i, spec in enumerate(config.rewards)),
    ]
    if config.eval.verifier is not None:
        named.append(("eval.verifier", REWARDS, config.eval.verifier))
    if config.tools.env != "none":
        from rlvr.envs.rollout import ENVS

        named.append(("tools.env", ENVS, config.tools.env))
    for key, registry, name in named:
        try:
            registry.get(name)
        except ConfigError as err:
            extra = ", gae (with critic.model)" if key == "algo.advantage" else ""
            raise ConfigError(f"{key}: {err}{extra}") from None


def to_yaml(config: RunConfig) -> str:
    """The resolved config as YAML: what every run directory keeps."""
    data = config.model_dump(mode="json")
    return yaml.safe_dump(data, sort_keys=False)
