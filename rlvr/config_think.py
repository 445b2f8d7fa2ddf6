"""The ``think`` section: reasoning in a marked span, thinking budgets and modes (rlvr.rollout.think).

Off by default (``enabled: false``): rollouts and eval are exactly the plain single-turn ones.
"""

from pydantic import Field, model_validator

from rlvr.config_base import Section


class ThinkConfig(Section):
    """``<think>...</think>`` then the answer; a thinking budget with a forced answer (Elastic
    Reasoning); HBPO's budget subgroups; AdaptThink's no-think mode; S-GRPO's early exits."""

    enabled: bool = False
    open: str = Field("<think>", min_length=1)  # the thinking span's markers
    close: str = Field("</think>", min_length=1)
    instruction: str | None = None  # appended to every prompt's last user message ({open}/{close} filled in)
    prefill: bool = True  # the assistant turn starts with the open marker (as R1-style chat templates do)
    budget: int | None = Field(None, ge=1)  # thinking tokens; at the budget the thinking is cut and the answer forced
    forced: str = "\n{close}\nThe final answer is \\boxed{"  # appended at the cut (Elastic Reasoning, AnytimeReasoner)
    answer_tokens: int = Field(32, ge=1)  # the answer after the thinking closes (or is cut)
    train_forced: bool = False  # the forced tokens in the loss (Elastic Reasoning trains its forced </think>)
    budgets: list[int] = []  # HBPO: the group split evenly across these budgets, each announced in the response
    budget_prefix: str = " I will answer the question within {budget} tokens.\n"  # HBPO's announcement (prompt side)
    no_think_frac: float = Field(0.0, ge=0.0, lt=1.0)  # AdaptThink: share of each group forced to skip thinking
    start: str = Field("\n", min_length=1)  # AdaptThink: what the thinking rows are forced to start with
    no_think_max_chars: int | None = Field(None, ge=1)  # a no-think answer longer than this is implicit thinking
    # (worked steps after the close marker): it counts as thinking for the no-think rate and adapt_think's bonus
    early_exits: bool = False  # S-GRPO: one sampled path per prompt, the rest of the group exits from it early

    @model_validator(mode="after")
    def _one_mode(self) -> "ThinkConfig":
        modes = [name for name, on in (("budgets", bool(self.budgets)), ("no_think_frac", self.no_think_frac > 0),
                                       ("early_exits", self.early_exits)) if on]  # fmt: skip
        if len(modes) > 1:
            raise ValueError(f"think: {' and '.join(modes)} build groups in different ways; choose one")
        if any(b < 1 for b in self.budgets):
            raise ValueError(f"think.budgets must be positive token counts, got {self.budgets}")
        if "{budget}" not in self.budget_prefix:
            raise ValueError("think.budget_prefix must contain {budget} (the subgroup's budget)")
        return self

    def fill(self, text: str) -> str:
        """``text`` with the markers in place of ``{open}`` and ``{close}``."""
        return text.replace("{open}", self.open).replace("{close}", self.close)


MARKED_REWARDS = ("think_format", "adapt_think")  # rewards that find the thinking by its markers
DEFAULT_MARKERS = {"open": "<think>", "close": "</think>"}


def check_think(config) -> None:
    """What the think modes ask of the rest of a RunConfig (called from its validator)."""
    think = config.think
    if not think.enabled and (think.budget or think.budgets or think.no_think_frac or think.early_exits):
        raise ValueError("think.budget, budgets, no_think_frac and early_exits need think.enabled=true")
    check_group_rewards(config)
    if think.enabled:
        check_think_rollout(config)


def check_group_rewards(config) -> None:
    """The rewards and advantages that read what the think modes put on each completion."""
    think, names = config.think, [spec.name for spec in config.rewards]
    if "decaying_exit" in names and not think.early_exits:
        raise ValueError(
            "the decaying_exit reward needs think.early_exits=true (it orders each group by exit position)"
        )
    if "hbpo_budget" in names and not think.budgets:
        raise ValueError("the hbpo_budget reward needs think.budgets (each completion's subgroup budget)")
    advantage = config.algo.advantage
    if advantage.name != "hbpo":
        return
    params = advantage.params()
    if params.get("budgets") != think.budgets:
        raise ValueError(
            f"algo.advantage.budgets={params.get('budgets')} must be think.budgets={think.budgets} "
            "(the subgroups the rollout made)"
        )
    if think.budgets and max(think.budgets) >= params.get("max_tokens", 0):
        raise ValueError(
            f"think.budgets must all be below max_tokens={params.get('max_tokens')}: at b = L_max HBPO's ceiling "
            "beta cos(pi b / (2 L_max)) is 0 and that subgroup has no signal"
        )
    for spec in config.rewards:
        if spec.name == "hbpo_budget":
            reward = spec.params()
            for key, default in (("max_tokens", None), ("beta", 4.0)):
                if reward.get(key, default) != params.get(key, default):
                    raise ValueError(
                        f"algo.advantage.{key}={params.get(key, default)} must be the hbpo_budget reward's "
                        f"{key}={reward.get(key, default)} (the advantage subtracts the reward's ceilings)"
                    )
    if config.rollout.dynamic_sampling:
        raise ValueError("rollout.dynamic_sampling drops groups whose rewards agree, but the hbpo advantage is not 0 "
                         "there (its intra-subgroup term): turn one off")  # fmt: skip


def check_think_rollout(config) -> None:
    think, group = config.think, config.rollout.group_size
    if config.tools.env != "none":
        raise ValueError("think is single-turn: it needs tools.env=none")
    if config.sft.group_demos or config.sft.prefix_rollouts:
        raise ValueError("think rollouts do not take demonstrations into their groups: unset sft.group_demos and "
                         "sft.prefix_rollouts")  # fmt: skip
    if not think.prefill and (think.no_think_frac or think.budgets):
        raise ValueError(
            "think.no_think_frac and think.budgets need think.prefill=true (they write after the open marker)"
        )
    if config.algo.kl_in_reward and (think.no_think_frac or think.train_forced):
        raise ValueError(
            "algo.kl_in_reward estimates KL from the rollout's log-probs, which inserted tokens do not have: "
            "with think.no_think_frac or think.train_forced, keep the KL in the loss (kl_in_reward=false)"
        )
    if config.algo.advantage.name == "identity" and config.rollout.dynamic_sampling:
        raise ValueError("rollout.dynamic_sampling drops groups whose rewards agree, but the identity advantage is "
                         "not 0 there: turn one off")  # fmt: skip
    for i, spec in enumerate(config.rewards):
        if spec.name in MARKED_REWARDS:
            params = spec.params()
            for key, marker in (("open", think.open), ("close", think.close)):
                if params.get(key, DEFAULT_MARKERS[key]) != marker:
                    raise ValueError(
                        f"rewards[{i}] ({spec.name}) reads the {key} marker {params.get(key, DEFAULT_MARKERS[key])!r} "
                        f"but think.{key} is {marker!r}: set rewards[{i}].{key} too"
                    )
            if spec.name == "adapt_think" and params.get("no_think_max_chars") != think.no_think_max_chars:
                raise ValueError(
                    f"rewards[{i}] (adapt_think) has no_think_max_chars={params.get('no_think_max_chars')} but "
                    f"think.no_think_max_chars is {think.no_think_max_chars}: the bonus and the no-think rate must "
                    "count the same answers as no-think; set both"
                )
    if think.budgets and group % len(think.budgets):
        raise ValueError(f"think.budgets: {len(think.budgets)} subgroups must divide rollout.group_size={group} evenly")
    if think.no_think_frac and not 1 <= round(think.no_think_frac * group) < group:
        raise ValueError(
            f"think.no_think_frac={think.no_think_frac} gives no rows of one mode in groups of {group}: "
            "each group needs both modes"
        )
    if think.budget is not None and think.budget > config.rollout.max_new_tokens:
        raise ValueError(f"think.budget={think.budget} is above rollout.max_new_tokens={config.rollout.max_new_tokens}")
