"""A sequence's definition in words, for the text of `sequences show`: when each step runs, what
sets each trigger off and what it does, and a setting's value as a person reads it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeGuard

import orjson

UNIT_NAMES = {"minutes": "minute", "hours": "hour", "days": "day"}


def delay_words(delay: Any, after: str | None) -> str:
    """When a step runs. `after` is the id of the step before it, None for the first: step
    1's delay counts from enrollment, step k's from the execution of step k-1 (CONTRACT.md
    §3). A delay this version cannot word is shown as written."""
    anchor = "enrollment" if after is None else f"step {after}"
    if delay is None:
        delay = {"kind": "none"}  # the default, should an older definition leave it out
    if not isinstance(delay, Mapping):
        return value_text(delay)
    kind = delay.get("kind")
    amount, unit = delay.get("amount"), delay.get("unit")
    at, days = delay.get("at"), delay.get("days", 0)
    if kind == "none":
        return f"at once after {anchor}"
    if kind == "default" and _whole(amount) and unit in UNIT_NAMES:
        return f"{counted(amount, UNIT_NAMES[unit])} after {anchor}"
    if kind == "time_of_day" and isinstance(at, str) and _whole(days):
        if days == 0:
            return (
                f"at {at} the contact's time on the day of {anchor}"
                f" (the next day if {at} has passed)"
            )
        return f"at {at} the contact's time, {counted(days, 'day')} after {anchor}"
    return value_text(dict(delay))


def trigger_action(trigger: Mapping[str, Any]) -> str:
    """What the trigger does to a contact. `sequence.defined` fills `action` in on every
    trigger; a stream written before it did had it on the disposition triggers only, and
    the engine's rule for the others: a `call_duration` trigger disenrolls, any other
    enrolls."""
    action = trigger.get("action")
    if isinstance(action, str) and action:
        return action
    return "disenroll" if trigger.get("type") == "call_duration" else "enroll"


def trigger_values(trigger: Mapping[str, Any]) -> str:
    """What sets the trigger off: its keys but `type` and `action` (`tags: hot, vip`,
    `metric: talk_time; seconds: 60`); empty for one that takes none (`contact_created`)."""
    return "; ".join(
        f"{key}: {value_text(value)}"
        for key, value in trigger.items()
        if key not in ("type", "action")
    )


def value_text(value: Any) -> str:
    """`true`/`false` and `-` (null) as in a sequence file; a list of plain values joined
    with commas; anything nested as compact JSON, so nothing a step carries is hidden."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, list) and all(_plain(item) for item in value):
        return ", ".join(value_text(item) for item in value)
    return orjson.dumps(value).decode()


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float)


def _whole(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def counted(amount: int, unit: str) -> str:
    """`1 day`, `2 days`: the plural by an s, as every unit and thing counted here takes."""
    return f"{amount} {unit}" if amount == 1 else f"{amount} {unit}s"
