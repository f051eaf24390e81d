"""A small generic registry (the torchvision ``_api.py`` / timm ``_registry.py`` shape).

Each family (datasets, models, compression methods) owns one :class:`Registry`; entries are
added with its ``register`` decorator, which refuses a duplicate name, and looked up with
``get``, whose error lists the valid names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from funcsim.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> builder mapping for one family of things (``kind`` names it in errors)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@REG.register("lenet")`` adds the decorated object under ``name``."""

        def decorator(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        """The entry called ``name``; an unknown name raises an error listing the valid ones."""
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries
