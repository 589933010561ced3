"""An advance that spills: a replay's --until years past its input fires years of timers,
handed over a part at a time instead of held at once, and the same outputs either way."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from aggregates import engine_core
from aggregates.engine import Engine
from schemas.envelope import CloudEvent, parse_time
from schemas.validation import decode_event
from tests.engine.helpers import definitions, event, sequence

DAY = {"kind": "default", "amount": 1, "unit": "days"}


def engine_with_a_year_to_go() -> Engine:
    """Two sequences that tag each other a day later, for ever: a timer a day."""
    ping, pong = (
        sequence(
            id=name,
            steps=[
                {"id": "rm", "type": "remove_tag", "tag": name},
                {"id": "add", "type": "add_tag", "tag": other, "delay": DAY},
            ],
            triggers=[{"type": "contact_tagged", "tags": [name]}],
        )
        for name, other in (("ping", "pong"), ("pong", "ping"))
    )
    engine = Engine()
    engine.define(definitions(ping, pong), parse_time("2027-05-04T15:00:00Z"), "defs")
    tagged: dict[str, Any] = event(
        "contact.tag_added", "2027-05-04T15:00:00Z", contact_id="c-1", tag="ping"
    )
    engine.handle(decode_event(orjson.dumps(tagged)))
    return engine


def test_spilled_parts_are_the_outputs_of_one_advance(monkeypatch: pytest.MonkeyPatch) -> None:
    until = parse_time("2028-05-04T15:00:00Z")
    whole = engine_with_a_year_to_go().advance(until)
    monkeypatch.setattr(engine_core, "SPILL_EVERY", 50)
    parts: list[list[CloudEvent]] = []
    last = engine_with_a_year_to_go().advance(until, spill=parts.append)
    assert len(whole) > 1000
    assert len(parts) >= len(whole) // 60
    assert all(50 <= len(part) < 60 for part in parts)
    assert [e.encode() for part in [*parts, last] for e in part] == [e.encode() for e in whole]
