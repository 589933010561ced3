"""Upcasters turn an old version of a type's data into the next one, so consumers see only the
current version. A breaking change to a type's data bumps its version and adds one here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from schemas.registry import EVENT_TYPES

Data = dict[str, Any]
Upcaster = Callable[[Data], Data]

_UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register the function that turns `event_type` data at `from_version` into the next one."""

    def register(function: Upcaster) -> Upcaster:
        key = (event_type, from_version)
        if key in _UPCASTERS:
            raise ValueError(f"an upcaster for {event_type} v{from_version} is already registered")
        _UPCASTERS[key] = function
        return function

    return register


def registered_upcasters() -> Mapping[tuple[str, int], Upcaster]:
    return dict(_UPCASTERS)


def upcast(event_type: str, data: Data, from_version: int) -> Data:
    """Chain the upcasters from `from_version` up to the type's current version.

    Upcasters return new dicts and leave their argument alone, so a caller's payload is never
    changed behind its back.
    """
    current = EVENT_TYPES[event_type].version
    for version in range(from_version, current):
        data = _UPCASTERS[(event_type, version)](data)
    return data


@upcaster("contact.opted_out", 1)
def _opted_out_channel_required(data: Data) -> Data:
    # v1 let `channel` out (or null) and meant every channel by that; v2 says so explicitly.
    if data.get("channel") is not None:
        return data
    return {**data, "channel": "all"}
