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

from rlvr.config_base import Component, Section
from rlvr.config_distributed import DistributedConfig, check_distributed
from rlvr.config_sampling import HintConfig, ReplayConfig, check_sampling
from rlvr.config_sft import SFT_COMPONENT_DEFAULTS, DemosConfig, SftConfig, Stage
from rlvr.config_think import ThinkConfig, check_think
from rlvr.errors import ConfigError

RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
DEFAULT_RECIPE = "grpo"


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


class RewardSpec(Component):
    """One term of the reward mix: ``{name: math, weight: 1.0}`` plus the reward's own hyper-parameters."""

    weight: float = Field(1.0, allow_inf_nan=False)


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
    precision: Literal["train", "fp32", "bf16"] = "train"  # the rollout's compute; train: as train.precision
    dynamic_sampling: bool = False  # DAPO: drop groups whose rewards all agree, sample more prompts
    max_sampling_rounds: int = Field(3, ge=1)  # bound on rounds per step when dynamic_sampling is on
    allocation: Component = Component(name="fixed")  # rollouts per prompt: fixed (group_size) | xrpo (by uncertainty)


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
    cost: Literal["none", "per_call", "otc"] = "none"  # shorthand for a tool-cost reward (rlvr.rewards.mix)
    cost_coef: float = Field(0.05, ge=0)  # per_call: reward subtracted per call (the tool_calls reward's weight)
    otc_c: float = Field(1.0, gt=0)  # otc: the smoothing constant c of OTC's cosine branch
    packages: list[str] = ["numpy", "sympy"]  # python: importable in the sandbox if installed (nothing else is)


COMPONENT_DEFAULTS = {
    "advantage": "grpo",
    "policy_loss": "ppo_clip",
    "aggregation": "token_mean",
    "kl_estimator": "k3",
    "entropy_controller": "proportional",
}


class AlgoConfig(Section):
    """The loss's registered parts, each a name plus its own hyper-parameters (docs/algorithms.md):
    ``policy_loss: {name: ppo_clip, clip_low: 0.2, clip_high: 0.28}``."""

    advantage: Component = Component(name="grpo")  # a group estimator, or a token-level one (gae: critic.model)
    policy_loss: Component = Component(name="ppo_clip")
    aggregation: Component = Component(name="token_mean")
    kl_estimator: Component = Component(name="k3")
    kl_coef: float = Field(0.0, ge=0)  # 0: no reference model is loaded
    kl_in_reward: bool = False  # subtract kl_coef x sequence KL from the reward instead of adding it to the loss
    kl_target: float | None = Field(None, gt=0)  # adaptive coefficient (Ziegler et al. 2019) toward this KL
    kl_horizon: int = Field(10_000, ge=1)
    entropy_coef: float = Field(0.0, ge=0)  # entropy bonus in the loss
    entropy_target: float | None = Field(None, gt=0)  # adapt entropy_coef to hold entropy here
    entropy_controller: Component = Component(name="proportional")  # or skywork: fixed steps, bonus below target
    overlong_cache_tokens: int = Field(0, ge=0)  # shorthand for the `overlong` reward over the last N tokens; 0: off
    tis_cap: float | None = Field(None, gt=0)  # truncated importance sampling of trainer vs rollout log-probs

    @model_validator(mode="before")
    @classmethod
    def _named_components(cls, value: Any) -> Any:
        """``algo.policy_loss.clip_high=0.3`` on a recipe that leaves the loss at its default: a
        mapping without ``name`` keeps the default name."""
        if isinstance(value, dict):
            for key, default in COMPONENT_DEFAULTS.items():
                if isinstance(value.get(key), dict) and "name" not in value[key]:
                    value = {**value, key: {"name": default, **value[key]}}
        return value


class CriticConfig(Section):
    """A learned value model for PPO with GAE (``algo.advantage: gae``)."""

    model: str | None = None  # "policy": the policy's starting weights plus a value head; or a model name
    lr: float = Field(1e-5, gt=0)
    value_clip: float = Field(0.2, gt=0)


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
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # bf16: autocast, fp32 master weights (rlvr.precision);
    # auto: bf16 where the device has bf16 matrix units (AMX / AVX512-BF16 CPUs, CUDA), else fp32
    fp32_logits: bool = True  # under bf16: the LM head computes logits in fp32 (rollout and log-probs; rlvr.precision)


class EvalConfig(Section):
    every: int = Field(0, ge=0)  # steps between held-out evals; 0: only before and after
    before: bool = True  # evaluate the starting model at step 0
    size: int = Field(200, ge=1)  # held-out problems
    samples: int = Field(1, ge=1)  # completions per problem (pass@k needs samples >= k)
    temperature: float = Field(0.0, ge=0)  # 0: greedy
    max_new_tokens: int | None = None  # None: same as rollout
    batch_size: int = Field(64, ge=1)
    verifier: str | None = None  # reward that decides "correct"; None: the task's own
    budgets: list[int] = []  # rlvr eval: also evaluate at each of these token budgets (an accuracy-vs-budget table)

    @model_validator(mode="after")
    def _positive_budgets(self) -> "EvalConfig":
        if any(b < 1 for b in self.budgets):
            raise ValueError(f"eval.budgets must be positive token counts, got {self.budgets}")
        return self


TrackingBackend = Literal["tensorboard", "wandb", "mlflow", "trackio"]  # rlvr.tracking.TRACKERS; docs/tracking.md


class LogConfig(Section):
    """Where a run's numbers go: metrics.jsonl and samples.jsonl always, plus the ``backends`` named
    (rlvr.tracking). The old ``tensorboard: true|false`` key still reads where ``backends`` is not
    given (recipes, overrides and saved configs alike): false means ``backends: []``. Where both are
    given, ``backends`` wins, so that a preset's ``log.tensorboard=false`` yields to an explicit list."""

    samples_every: int = Field(5, ge=0)  # steps between sample dumps to samples.jsonl; 0: never
    samples_per_dump: int = Field(8, ge=1)
    backends: list[TrackingBackend] = ["tensorboard"]  # live trackers; wandb/mlflow/trackio are extras
    project: str = Field("rlvr", min_length=1)  # the W&B project, MLflow experiment, trackio project
    console: bool = True

    @model_validator(mode="before")
    @classmethod
    def _tensorboard_alias(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        value = dict(value)
        wanted = value.pop("tensorboard", True)
        if not isinstance(wanted, bool):
            raise ValueError(f"log.tensorboard={wanted!r}: true or false (the old form of log.backends)")
        backends = value.get("backends", ["tensorboard"] if wanted else [])
        backends = [backends] if isinstance(backends, str) else backends  # log.backends=wandb
        if isinstance(backends, list) and all(isinstance(b, str) for b in backends):
            backends = list(dict.fromkeys(backends))
        value["backends"] = backends
        return value

    @property
    def tensorboard(self) -> bool:
        """The old key, read-only: whether tensorboard is among ``backends``."""
        return "tensorboard" in self.backends


class CheckpointConfig(Section):
    every: int = Field(0, ge=0)  # steps between checkpoints; 0: only at the end
    keep: int = Field(2, ge=1)  # most recent checkpoints kept
    export_final: bool = True  # write final/ in Hugging Face format (LoRA: merged, and PEFT's folder final/adapter/)
    push_to_hub: str | None = None  # a Hub repo id: upload final/ at the end (needs a network and `hf auth login`)
    hub_private: bool = True


class RunConfig(Section):
    recipe: str = DEFAULT_RECIPE
    run_dir: str | None = None  # default: runs/<recipe>-<timestamp>
    plugins: list[str] = []  # modules or .py files that register tasks/rewards
    model: ModelConfig = ModelConfig()
    task: TaskConfig = TaskConfig()
    sampler: Component = Component(name="uniform")  # which prompts each step: uniform | pass_rate | mopps | ...
    rewards: list[RewardSpec] = [RewardSpec(name="math", weight=1.0), RewardSpec(name="boxed_format", weight=0.2)]
    rollout: RolloutConfig = RolloutConfig()
    tools: ToolsConfig = ToolsConfig()
    replay: ReplayConfig = ReplayConfig()  # ReMix-style off-policy reuse of recent groups (rlvr.samplers.replay)
    hints: HintConfig = HintConfig()  # Scaf-GRPO's tiered hints for unsolved prompts (rlvr.samplers.hints)
    think: ThinkConfig = ThinkConfig()  # reasoning markers, thinking budgets and modes (rlvr.rollout.think)
    algo: AlgoConfig = AlgoConfig()
    critic: CriticConfig = CriticConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    log: LogConfig = LogConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    demos: DemosConfig = DemosConfig()
    sft: SftConfig = SftConfig()
    stages: list[Stage] = []  # [{kind: sft, steps: 30}, {kind: rl, steps: 20}]; none: one RL stage of train.steps
    distributed: DistributedConfig = DistributedConfig()  # Ray placement of learner ranks and rollout workers

    @model_validator(mode="after")
    def _check_combinations(self) -> "RunConfig":
        if not self.rewards:
            raise ValueError("rewards: at least one reward is needed")
        check_stages(self)
        check_think(self)
        check_sampling(self)
        check_distributed(self)
        algo = self.algo
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


def check_stages(config: "RunConfig") -> None:
    """``stages`` set ``train.steps`` (their sum, whatever the recipe says); what mixing demonstrations
    into RL asks of the rollout."""
    if config.stages:  # they decide the run's length (an override of both is refused in load_config)
        config.train.steps = sum(stage.steps for stage in config.stages)
    sft, group = config.sft, config.rollout.group_size
    if sft.group_demos + sft.prefix_rollouts >= group:
        raise ValueError(
            f"sft.group_demos={sft.group_demos} + sft.prefix_rollouts={sft.prefix_rollouts} must leave at least one "
            f"sampled rollout in each group of rollout.group_size={group}"
        )
    if sft.prefix_rollouts and config.tools.env != "none":
        raise ValueError("sft.prefix_rollouts (Prefix-RFT) is single-turn only: it needs tools.env=none")


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
    apply_overrides(raw, overrides or [])
    refuse_steps_with_stages(raw, overrides or [])
    return validate(raw, source=str(path))


def validate(raw: dict[str, Any], source: str = "config") -> RunConfig:
    """Validate a raw dict into a RunConfig, turning pydantic's errors into one line."""
    try:
        config = RunConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{source}: {_describe(err)}") from None
    from rlvr.config_checks import check_plugin_params  # registries: imported only once a config is checked

    check_plugin_params(config)
    return config


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> None:
    """Apply ``key=value`` overrides in order, except that those naming a component come first:
    a new ``task.name`` (or ``algo.policy_loss``, a reward's ``name``) starts from that
    component's own defaults, dropping the recipe's keys for the old one, and the other overrides
    then apply on top whatever order they were given in."""
    renames = [o for o in overrides if _renames_component(raw, o)]
    for override in renames + [o for o in overrides if o not in renames]:
        apply_override(raw, override)


def component_defaults() -> dict[str, str]:
    """Dotted key -> default name of every component section of the schema (``task``, ``algo.*``)."""
    return {
        "task": TaskConfig().name,
        **{f"algo.{k}": v for k, v in COMPONENT_DEFAULTS.items()},
        **{f"sft.{k}": v for k, v in SFT_COMPONENT_DEFAULTS.items()},
    }


def _renames_component(raw: dict[str, Any], override: str) -> bool:
    key, _, text = override.partition("=")
    target = key.removesuffix(".name")
    return target in component_defaults() and (key.endswith(".name") or "{" not in text)


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Set ``a.b.c=value`` in the raw tree; the value is parsed as YAML (``3``, ``true``, ``[a, b]``).

    Setting a component's name (``task.name=countdown``, ``algo.policy_loss=gspo``) to another one
    replaces the component: its old keys belonged to the old function (a component written
    without ``name`` is its default one). Other sections (``model.name``) are set as they are."""
    key, sep, text = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {override!r} is not of the form key=value")
    try:
        value = yaml.safe_load(text) if text else ""
    except yaml.YAMLError:
        value = text
    components = component_defaults()
    target = key.removesuffix(".name")
    if target in components and isinstance(value, str):
        parent, _, field = target.rpartition(".")
        node = _section(raw, parent.split(".") if parent else [], key)
        current = node.get(field)
        name = current if isinstance(current, str) else (current or {}).get("name", components[target])
        if name != value or not isinstance(current, dict):
            node[field] = {"name": value}
        return
    node = raw
    parts = key.split(".")
    node = _section(raw, parts[:-1], key)
    node[parts[-1]] = value


def _section(raw: dict[str, Any], parts: list[str], key: str) -> dict[str, Any]:
    """The mapping at ``parts`` (made if missing; a component given by its name alone becomes ``{name: ...}``)."""
    node = raw
    for depth, part in enumerate(parts):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if isinstance(child, str) and ".".join(parts[: depth + 1]) in component_defaults():
            child = node[part] = {"name": child}
        if not isinstance(child, dict):
            raise ConfigError(f"override {key}: {'.'.join(parts[: depth + 1])} is not a section")
        node = child
    return node


# Keys that moved (into the component that declares them, or renamed): the one-line error says where.
MOVED = {
    **{f"algo.{k}": f"is now the policy loss's own key: set algo.policy_loss.{k}" for k in ("clip_low", "clip_high")},
    "algo.dual_clip_c": "is now dual_clip's own key: set algo.policy_loss.dual_clip_c (with policy_loss dual_clip)",
    **{
        f"algo.{k}": f"is now cispo's own key: set algo.policy_loss.{k} (with algo.policy_loss: cispo)"
        for k in ("cispo_clip_low", "cispo_clip_high")
    },  # fmt: skip
    "algo.std_eps": "is now the advantage estimator's own key: set algo.advantage.eps",
    "algo.pass_k": "is now pass_k's own key: set algo.advantage.pass_k (with algo.advantage: pass_k)",
    "algo.entropy_rate": "is now the entropy controller's own key: set algo.entropy_controller.rate",
    **{
        f"critic.{k}": f"is now GAE's own key: set algo.advantage.{k} (with algo.advantage: gae)"
        for k in ("gamma", "lam")
    },
    "rollout.packed_weights": "was renamed rollout.onednn_weights",
}


def _describe(err: ValidationError) -> str:
    first = err.errors()[0]
    loc = [str(part) for part in first["loc"]]
    key = ".".join(loc) or "config"
    if first["type"] == "extra_forbidden" and key in MOVED:
        return f"{key} {MOVED[key]}"
    if first["type"] == "extra_forbidden":
        valid = _valid_keys(loc[:-1])
        close = get_close_matches(loc[-1], valid, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        return f"unknown key {key!r}.{hint} Valid keys here: {', '.join(valid)}"
    value = first.get("input")
    if first["type"] == "missing":
        return f"{key} is required"
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


def refuse_steps_with_stages(raw: dict[str, Any], overrides: list[str]) -> None:
    if raw.get("stages") and any(o.startswith("train.steps=") for o in overrides):
        raise ConfigError(
            "train.steps=... with stages: the stages' steps decide the run's length; set those instead, "
            "e.g. stages='[{kind: sft, steps: 2}, {kind: rl, steps: 3}]'"
        )


def to_yaml(config: RunConfig) -> str:
    """The resolved config as YAML: what every run directory keeps."""
    data = config.model_dump(mode="json")
    return yaml.safe_dump(data, sort_keys=False)
