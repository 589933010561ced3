"""Frozen dataclasses for the values the engine makes several of per decision."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar, dataclass_transform

_T = TypeVar("_T")


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def immutable(cls: type[_T]) -> type[_T]:
    """A frozen dataclass with slots to the type checker, which refuses any assignment to a
    field; at run time a slots dataclass with the same equality and hash, whose fields are
    set without the frozen guard.

    Why: a frozen class's `__init__` sets each field through `object.__setattr__`, about
    five times the cost of a plain one, and the events, decisions, enrollment and contact
    states built for every output took a tenth of a replay's CPU doing it. Immutability is
    kept where it is decided, by mypy in strict mode over every module; only a caller
    outside the type checker could still assign, and none does.
    """
    return dataclass(slots=True, unsafe_hash=True)(cls)
