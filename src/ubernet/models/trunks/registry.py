"""Trunk registry: ``@register_trunk("name")`` on a builder, ``build_trunk("name", **kwargs)`` to make one."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TypeVar

from ubernet.errors import ConfigError
from ubernet.models.trunks.base import Trunk

TRUNKS: dict[str, Callable[..., Trunk]] = {}

F = TypeVar("F", bound=Callable[..., Trunk])


def register_trunk(name: str) -> Callable[[F], F]:
    """Decorator: register a builder (keyword-only arguments, returns a :class:`Trunk`) under ``name``."""

    def deco(builder: F) -> F:
        if name in TRUNKS:
            raise ValueError(f"trunk {name!r} registered twice")
        TRUNKS[name] = builder
        return builder

    return deco


def build_trunk(name: str, **kwargs: object) -> Trunk:
    """Build the trunk registered as ``name`` with the given keyword options.

    Raises ConfigError for an unknown name (listing the valid names) or an option the builder does not take
    (listing its options). Invalid option values raise ConfigError from the builder itself.
    """
    if name not in TRUNKS:
        raise ConfigError(f"unknown trunk {name!r}; valid trunks: {sorted(TRUNKS)}")
    builder = TRUNKS[name]
    params = inspect.signature(builder).parameters
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise ConfigError(f"trunk {name!r} has no option(s) {unknown}; valid options: {sorted(params)}")
    return builder(**kwargs)
