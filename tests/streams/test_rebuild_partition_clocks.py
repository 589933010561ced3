"""A rebuild under `--clock event` follows the partition clocks of every group it holds, as
the live worker did: a throttle minute past for the groups replayed first is kept for a
group replayed after them, whose inputs may still decide in it."""

from __future__ import annotations

from datetime import datetime, timedelta
from types import SimpleNamespace

import orjson

from aggregates.engine import Engine
from schemas.envelope import format_time
from schemas.validation import decode_event
from streams import routing
from streams.engine_rebuild import replay_store
from streams.store import Definitions, Replayable
from tests.engine.helpers import definitions, event, sequence

T0 = datetime.fromisoformat("2027-03-01T15:00:00+00:00")
DEFINITIONS = definitions(
    sequence(
        throttle_per_minute=1,
        steps=[{"id": "hook", "type": "send_webhook", "url": "https://hooks.example.com/x"}],
        triggers=[{"type": "contact_created"}],
    )
)


def _ids_on(partition: int, count: int) -> list[str]:
    found = (f"c-{n}" for n in range(10_000))
    return [c for c in found if routing.kafka_partition(c, 2) == partition][:count]


def _created(contact: str, at: datetime) -> bytes:
    return orjson.dumps(event("contact.created", format_time(at), contact_id=contact))


def test_a_group_replayed_after_the_others_finds_their_throttle_minutes_counted() -> None:
    # Group 0 was decided up to 15:11 before group 1's first input, of 15:00: live, the
    # minutes of 15:00-15:11 were all taken when it came.
    early = [(_created(c, T0 + timedelta(minutes=n)), 0) for n, c in enumerate(_ids_on(0, 12))]
    (late_contact,) = _ids_on(1, 1)
    stored = [*early, (_created(late_contact, T0), 1)]
    live = Engine(partition_of=lambda c: routing.kafka_partition(c, 2))
    live.expect_partitions({0, 1})
    live.adopt(DEFINITIONS, (), T0 - timedelta(hours=1), "defs:1")
    for raw, partition in stored:
        live.handle(decode_event(raw), partition=partition)

    store = SimpleNamespace(
        definitions_after=lambda _version: [
            Definitions(1, DEFINITIONS, (), T0 - timedelta(hours=1))
        ],
        replayable=lambda _names: iter(
            Replayable(n, "input", None, 1, raw, partition)
            for n, (raw, partition) in enumerate(stored, start=1)
        ),
    )
    rebuilt = replay_store(
        store,  # type: ignore[arg-type]
        ["p.contacts:0", "p.contacts:1"],
        frozenset({0, 1}),
        partition_of=lambda c: routing.kafka_partition(c, 2),
        event_clock=True,
    ).engine

    due = live.enrollments[late_contact]["seq"].due_at
    assert due == T0 + timedelta(minutes=12)
    assert rebuilt.enrollments[late_contact]["seq"].due_at == due
