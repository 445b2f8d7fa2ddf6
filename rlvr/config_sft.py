"""Config sections for supervised warm-up and SFT+RL mixing: ``demos``, ``sft`` and ``stages``
(docs/sft.md). Kept apart from :mod:`rlvr.config`, which validates them with the rest."""

from typing import Literal

from pydantic import Field, model_validator

from rlvr.config_base import Component, Section

SFT_COMPONENT_DEFAULTS = {"loss": "nll", "off_policy_loss": "luffy"}


class DemosConfig(Section):
    """Where demonstrations come from (rlvr.demos)."""

    path: str | None = None  # a JSONL / parquet / JSON / CSV file or saved dataset; None: the task's own generator
    size: int | None = Field(None, ge=1)  # the first N of the file (default: all), or N train prompts generated (256)
    no_think: float = Field(0.0, ge=0.0, le=1.0)  # think on: this share of generated ones skips thinking


class SftConfig(Section):
    """Supervised steps (``stages`` of kind sft, ``rlvr sft``) and demonstrations mixed into RL."""

    batch_size: int = Field(16, ge=1)  # demonstrations per SFT step (and per RL step for the auxiliary loss)
    loss: Component = Component(name="nll")  # nll | chord_phi (rlvr.algos.sft.SFT_LOSSES)
    max_tokens: int = Field(1024, ge=1)  # a longer demonstration is cut (as TRL's max_length)
    coef: float = Field(0.0, ge=0)  # auxiliary SFT loss on demonstrations during RL steps; 0: off
    coef_final: float = Field(0.0, ge=0)  # ... decays to this over each RL stage unless constant
    coef_schedule: Literal["constant", "linear", "cosine"] = "constant"
    convex: bool = False  # CHORD's form (1 - coef) L_RL + coef L_SFT instead of L_RL + coef L_SFT (coef <= 1)
    group_demos: int = Field(0, ge=0)  # LUFFY: a prompt with a demonstration has it in its group this many times
    off_policy_loss: Component = Component(name="luffy")  # luffy | importance (rlvr.algos.sft.OFF_POLICY_LOSSES)
    relift_size: int = Field(0, ge=0)  # ReLIFT: an SFT update once this many all-wrong prompts with demos gather
    prefix_rollouts: int = Field(0, ge=0)  # Prefix-RFT: rollouts per group continuing a prefix of the demonstration
    prefix_fraction: tuple[float, float] = (0.2, 0.8)  # the prefix's share of the demonstration, drawn uniformly

    @model_validator(mode="before")
    @classmethod
    def _named_components(cls, value):
        """``sft.off_policy_loss.gamma=0.2`` keeps the default loss's name."""
        if isinstance(value, dict):
            for key, default in SFT_COMPONENT_DEFAULTS.items():
                if isinstance(value.get(key), dict) and "name" not in value[key]:
                    value = {**value, key: {"name": default, **value[key]}}
        return value

    @model_validator(mode="after")
    def _fraction(self) -> "SftConfig":
        low, high = self.prefix_fraction
        if not 0 <= low <= high < 1:
            raise ValueError(f"sft.prefix_fraction={list(self.prefix_fraction)}: need 0 <= low <= high < 1")
        if self.convex and max(self.coef, self.coef_final) > 1:
            raise ValueError(f"sft.convex mixes (1 - coef) L_RL + coef L_SFT: sft.coef={self.coef} must be <= 1")
        return self

    @property
    def mixes(self) -> bool:
        """Whether RL steps use demonstrations."""
        return bool(self.coef or self.group_demos or self.relift_size or self.prefix_rollouts)


class Stage(Section):
    """One stage of a run: ``{kind: sft, steps: 30}`` or ``{kind: rl, steps: 20, lr: 1e-5}``."""

    kind: Literal["sft", "rl"]
    steps: int = Field(ge=1)
    lr: float | None = Field(None, gt=0)  # this stage's learning rate; None: optim.lr
