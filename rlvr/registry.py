"""Name -> function registries, one per kind of component (verl's core_algos pattern).

Each kind (advantage estimators, policy losses, rewards, tasks, ...) keeps one
:class:`Registry`. Every function in a registry has the same signature, so callers never
special-case a name; a typo lists the valid names.
"""

from collections.abc import Callable
from difflib import get_close_matches
from typing import Generic, TypeVar

from rlvr.errors import ConfigError

F = TypeVar("F", bound=Callable)


class Registry(Generic[F]):
    """A named collection of functions of one kind."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, F] = {}

    def register(self, name: str) -> Callable[[F], F]:
        """Decorator: ``@REGISTRY.register("grpo")``."""

        def add(fn: F) -> F:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = fn
            return fn

        return add

    def get(self, name: str) -> F:
        """The function called ``name``; a :class:`ConfigError` listing valid names if none."""
        if name not in self._entries:
            close = get_close_matches(name, self._entries, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"unknown {self.kind} {name!r}.{hint} Valid: {', '.join(self.names())}")
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries


def call_with(fn: Callable, *args, **available):
    """Call ``fn(*args, **kw)`` with just the keyword arguments it declares, taken from ``available``.

    Every function of a kind shares the positional inputs; its hyper-parameters are explicit
    keyword-only arguments named after config fields. This passes each function exactly the
    ones it names, so the caller never special-cases a function's name.
    """
    import inspect

    params = inspect.signature(fn).parameters
    kwargs = {}
    for name, param in params.items():
        if param.kind is not param.KEYWORD_ONLY:
            continue
        if name in available:
            kwargs[name] = available[name]
        elif param.default is param.empty:
            raise TypeError(f"{fn.__name__} needs keyword {name!r}, which the trainer does not provide")
    return fn(*args, **kwargs)
