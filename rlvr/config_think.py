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
    answer_tokens: int = Field(16, ge=1)  # the answer after the thinking closes (or is cut)
    train_forced: bool = False  # the forced tokens in the loss (Elastic Reasoning trains its forced </think>)
    budgets: list[int] = []  # HBPO: the group split evenly across these budgets, each announced in the response
    budget_prefix: str = " I will answer the question within {budget} tokens.\n"  # HBPO's announcement (prompt side)
    no_think_frac: float = Field(0.0, ge=0.0, lt=1.0)  # AdaptThink: share of each group forced to skip thinking
    start: str = Field("\n", min_length=1)  # AdaptThink: what the thinking rows are forced to start with
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
    think, group = config.think, config.rollout.group_size
    active = think.enabled
    if not active and (think.budget or think.budgets or think.no_think_frac or think.early_exits):
        raise ValueError("think.budget, budgets, no_think_frac and early_exits need think.enabled=true")
    advantage = config.algo.advantage
    if advantage.name == "hbpo" and advantage.params().get("budgets") != think.budgets:
        raise ValueError(
            f"algo.advantage.budgets={advantage.params().get('budgets')} must be think.budgets={think.budgets} "
            "(the subgroups the rollout made)"
        )
    if not active:
        return
    if config.tools.env != "none":
        raise ValueError("think is single-turn: it needs tools.env=none")
    if config.sft.group_demos or config.sft.prefix_rollouts:
        raise ValueError("think rollouts do not take demonstrations into their groups: unset sft.group_demos and "
                         "sft.prefix_rollouts")  # fmt: skip
    for i, spec in enumerate(config.rewards):
        if spec.name in MARKED_REWARDS:
            params = spec.params()
            for key, marker in (("open", think.open), ("close", think.close)):
                if params.get(key, DEFAULT_MARKERS[key]) != marker:
                    raise ValueError(
                        f"rewards[{i}] ({spec.name}) reads the {key} marker {params.get(key, DEFAULT_MARKERS[key])!r} "
                        f"but think.{key} is {marker!r}: set rewards[{i}].{key} too"
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
