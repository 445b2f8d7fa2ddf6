"""Name -> function registries, one per kind of component (verl's core_algos pattern).

Each kind (advantage estimators, policy losses, rewards, tasks, ...) keeps one
:class:`Registry`. Every function in a registry has the same signature, so callers never
special-case a name; a typo lists the valid names.
"""

import functools
import inspect
import warnings
from collections.abc import Callable
from difflib import get_close_matches
from typing import Any, Generic, TypeVar

from pydantic import ConfigDict, ValidationError, create_model

from rlvr.errors import ConfigError

F = TypeVar("F", bound=Callable)


class Registry(Generic[F]):
    """A named collection of functions of one kind.

    ``context`` names the keyword arguments the caller supplies at each call (e.g. an aggregation's
    ``batch_tokens``); every other keyword-only parameter of a registered function is one of its
    hyper-parameters, set from the recipe (:meth:`bind`). ``traits`` at registration describe a
    function to the config's checks (``binary_rewards=True``) without the config naming it.
    """

    def __init__(self, kind: str, context: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.context = context
        self._entries: dict[str, F] = {}
        self._traits: dict[str, dict[str, Any]] = {}
        self._checkers: dict[str, type] = {}  # name -> the pydantic model of its hyper-parameters, built once

    def register(self, name: str, **traits: Any) -> Callable[[F], F]:
        """Decorator: ``@REGISTRY.register("grpo")``."""

        def add(fn: F) -> F:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = fn
            self._traits[name] = traits
            return fn

        return add

    def unregister(self, name: str) -> None:
        """Forget ``name`` (a file reward whose file moved); a no-op when it is not registered."""
        self._entries.pop(name, None)
        self._traits.pop(name, None)
        self._checkers.pop(name, None)

    def get(self, name: str) -> F:
        """The function called ``name``; a :class:`ConfigError` listing valid names if none."""
        if name not in self._entries:
            close = get_close_matches(name, self._entries, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"unknown {self.kind} {name!r}.{hint} Valid: {', '.join(self.names())}")
        return self._entries[name]

    def traits(self, name: str) -> dict[str, Any]:
        self.get(name)
        return dict(self._traits[name])

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def hparams(self, name: str) -> dict[str, inspect.Parameter]:
        """The hyper-parameters ``name`` declares: its keyword-only parameters that are not context."""
        fn = self.get(name)
        try:  # string annotations (a plugin with ``from __future__ import annotations``) evaluated
            params = inspect.signature(fn, eval_str=True).parameters.values()
        except (NameError, TypeError, SyntaxError) as err:
            raise ConfigError(
                f"{self.kind} {name!r}: its signature's annotations cannot be evaluated ({err})"
            ) from None
        return {p.name: p for p in params if p.kind is p.KEYWORD_ONLY and p.name not in self.context}

    def resolve(self, name: str, params: dict[str, Any], key: str) -> dict[str, Any]:
        """``params`` checked against what ``name`` declares (names, types, bounds in ``Annotated``
        metadata) and completed with its defaults; a :class:`ConfigError` naming ``key.param`` if not."""
        declared = self.hparams(name)
        for param in params:
            if param not in declared:
                valid = ", ".join(declared) or "none"
                close = get_close_matches(param, declared, n=3, cutoff=0.5)
                hint = f" Did you mean {', '.join(close)}?" if close else ""
                raise ConfigError(
                    f"unknown key '{key}.{param}' for {self.kind} {name!r}.{hint} Its hyper-parameters: {valid}"
                )
        model = self._checkers.get(name)
        if model is None:
            fields = {
                p.name: (Any if p.annotation is p.empty else p.annotation, ... if p.default is p.empty else p.default)
                for p in declared.values()
            }
            config = ConfigDict(extra="forbid", strict=False)
            with warnings.catch_warnings():  # a hyper-parameter called `schema` or `json` shadows nothing we use
                warnings.filterwarnings("ignore", message="Field name .* shadows an attribute", category=UserWarning)
                model = self._checkers[name] = create_model(f"{name}_hparams", __config__=config, **fields)
        try:
            checked = model.model_validate(params)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            if first["type"] == "missing":
                raise ConfigError(f"{self.kind} {name!r} needs {key}.{where} (no default)") from None
            raise ConfigError(f"{key}.{where}={first.get('input')!r}: {first['msg']}") from None
        return checked.model_dump()

    def bind(self, name: str, params: dict[str, Any] | None = None, key: str | None = None) -> F:
        """``name``'s function with its hyper-parameters fixed (checked by :meth:`resolve`): the
        caller passes only the kind's shared inputs and context. Carries ``.name`` and ``.hparams``."""
        fn = self.get(name)
        hparams = self.resolve(name, params or {}, key or self.kind)
        bound = functools.partial(fn, **hparams)
        bound.name, bound.hparams = name, hparams  # type: ignore[attr-defined]
        return bound  # type: ignore[return-value]
