"""The base classes of every config section (:mod:`rlvr.config` and :mod:`rlvr.config_sft`)."""

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, ser_json_inf_nan="constants")


class Component(BaseModel):
    """A registered function by ``name`` plus its own hyper-parameters (every other key), checked
    against the function's signature at load (:meth:`rlvr.registry.Registry.resolve`). A bare
    string is the name with the function's defaults: ``algo.policy_loss: gspo``."""

    model_config = ConfigDict(extra="allow", ser_json_inf_nan="constants")  # .inf stays .inf in config.yaml
    name: str

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})
