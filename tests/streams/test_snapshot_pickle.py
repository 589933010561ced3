"""An engine read back from a worker's snapshot (streams/snapshots.py) is the engine that
was kept: it decides the rest of a history exactly as the original goes on to."""

from __future__ import annotations

import os
import pickle
from datetime import timedelta

import orjson
import pytest

from aggregates.engine import Engine
from schemas.envelope import parse_time
from schemas.validation import decode_event
from streams import snapshots
from tests.engine.helpers import definitions, event, sequence

T0 = parse_time("2027-07-06T14:00:00Z")  # a Tuesday
SEQUENCE = sequence(
    throttle_per_minute=3,
    triggers=[{"type": "contact_created"}, {"type": "contact_tagged", "tags": ["hot"]}],
    steps=[
        {"id": "s1", "type": "send_sms", "text": "Hi [FirstName]"},
        {
            "id": "s2",
            "type": "send_sms",
            "text": "Still there?",
            "delay": {"kind": "default", "amount": 1, "unit": "days"},
        },
    ],
)


def _partition_of(contact: str) -> int:
    return len(contact) % 2


def _history() -> list[bytes]:
    lines = []
    for n in range(24):
        at = (T0 + timedelta(minutes=n // 6)).isoformat().replace("+00:00", "Z")
        contact = f"c-{n}"
        lines.append(
            event(
                "contact.created", at, contact_id=contact, first_name=f"N{n}", phone="+12125550100"
            )
        )
        if n % 3 == 0:
            lines.append(event("contact.tag_added", at, contact_id=f"c-{n // 2}", tag="hot"))
    return [orjson.dumps(line) for line in lines]


def _decide(engine: Engine, lines: list[bytes]) -> list[bytes]:
    out = [e.encode() for line in lines for e in engine.handle(decode_event(line))]
    return out + [e.encode() for e in engine.advance(T0 + timedelta(days=3))]


def test_an_engine_read_back_from_its_snapshot_decides_the_rest_as_the_original() -> None:
    # given an engine that decided the first half of a history (throttled, steps waiting)
    lines = _history()
    original = Engine(partition_of=_partition_of)
    original.define(definitions(SEQUENCE), T0, "defs")
    half = len(lines) // 2
    for line in lines[:half]:
        original.handle(decode_event(line))
    # when it is kept as a snapshot and read back
    body = snapshots._pickled(original, _partition_of)
    copy = snapshots._unpickled(body, _partition_of)
    # then the copy decides the rest exactly as the original does
    rest = lines[half:]
    decided = _decide(copy, rest)
    assert decided == _decide(original, rest)
    assert any(b'"step.deferred"' in line for line in decided)  # the throttle was in play


class _Calls:
    """What a forged snapshot could hold: a call to any function at all, made on reading."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.getenv, ("HOME",))


def test_a_snapshot_naming_anything_but_the_engines_own_classes_is_refused() -> None:
    with pytest.raises(pickle.UnpicklingError, match=r"may not name (os|posix)\.getenv"):
        snapshots._unpickled(pickle.dumps(_Calls()), _partition_of)
