"""One record decided into the worker's batch (streams/deciding.py): stored and published,
passed over, or dead-lettered with its reason; a sequence command kept for the others."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from aggregates.engine import Engine
from aggregates.sequence import Catalog
from schemas.definitions import validate_definition_document
from schemas.envelope import CloudEvent
from schemas.validation import decode_event
from streams.deciding import Decided, DecidingContext, decide_record
from streams.metrics import WorkerMetrics
from streams.ordering import Pending
from streams.store import BatchRecord
from tests.engine.helpers import ACCOUNT, sequence

NOON = datetime(2027, 7, 6, 16, 0, tzinfo=UTC)


def _engine() -> Engine:
    document = validate_definition_document({"account": ACCOUNT, "sequences": [sequence()]})
    return Engine(Catalog.from_document(document))


def _context(engine: Engine, metrics: WorkerMetrics, *, wall: bool = False) -> DecidingContext:
    return DecidingContext(
        engine, metrics, 1, lambda _contact: 0, 7, (lambda: NOON) if wall else None
    )


def _raw(kind: str, data: dict[str, Any], **envelope: Any) -> bytes:
    body = {
        "specversion": "1.0",
        "id": "e-1",
        "source": "crm",
        "type": kind,
        "time": "2027-07-06T15:00:00Z",
        "subject": data.get("contact_id"),
        "data": data,
        **envelope,
    }
    return orjson.dumps({k: v for k, v in body.items() if v is not None})


def _pending(raw: bytes, event: CloudEvent | None, offset: int = 4) -> Pending:
    rejection = None if event is not None else ("data.tag", "is required")
    return Pending("p.contacts", 0, offset, b"c-1", raw, event, rejection)


def _decoded(raw: bytes) -> Pending:
    return _pending(raw, decode_event(raw, as_input=True))


def _count(metrics: WorkerMetrics, name: str) -> float:
    return metrics.registry.get_sample_value(name) or 0.0


def test_an_input_is_stored_and_its_decisions_go_to_the_outbox() -> None:
    # given a contact tagged "hot", which the sequence enrolls
    engine, metrics, record = _engine(), WorkerMetrics(), BatchRecord()
    tagged = _decoded(_raw("contact.tag_added", {"contact_id": "c-1", "tag": "hot"}))
    # when it is decided
    decided = decide_record(tagged, record, _context(engine, metrics))
    # then the input is stored under the definitions it was decided with, and published
    assert decided is Decided.INPUT
    [stored] = record.stored
    assert (stored.originator_id, stored.originator_version) == ("in:p.contacts:0", 4)
    state = orjson.loads(stored.state)
    assert (state["definitions"], state["at"]) == (7, None)  # under the event clock
    # (a contact the engine knows no phone of: its text is skipped)
    kinds = [orjson.loads(row.value)["type"] for row in record.outbox]
    assert kinds == [
        "enrollment.enrolled",
        "step.scheduled",
        "step.skipped",
        "enrollment.completed",
    ]
    assert {row.topic for row in record.outbox} == {"decisions"}
    assert _count(metrics, "dripstream_events_out_total") == len(record.outbox)


def test_on_the_wall_clock_an_input_is_decided_at_the_clocks_moment() -> None:
    engine, record = _engine(), BatchRecord()
    tagged = _decoded(_raw("contact.tag_added", {"contact_id": "c-1", "tag": "hot"}))

    decide_record(tagged, record, _context(engine, WorkerMetrics(), wall=True))

    enrolled = orjson.loads(record.outbox[0].value)
    assert (enrolled["type"], enrolled["time"]) == ("enrollment.enrolled", "2027-07-06T16:00:00Z")
    assert orjson.loads(record.stored[0].state)["at"] == "2027-07-06T16:00:00Z"


def test_a_rejected_record_becomes_a_dead_letter_with_its_reason() -> None:
    engine, metrics, record = _engine(), WorkerMetrics(), BatchRecord()
    raw = _raw("contact.tag_added", {"contact_id": "c-1"})

    decided = decide_record(_pending(raw, None), record, _context(engine, metrics))

    assert decided is Decided.INPUT
    assert record.stored == []
    [letter] = record.outbox
    assert letter.topic == "dlq"
    assert orjson.loads(letter.value)["reason"] == "is required"
    assert _count(metrics, "dripstream_dead_letters_total") == 1


def test_the_engines_own_change_is_passed_over() -> None:
    engine, record = _engine(), BatchRecord()
    # a tag a step added, written back to `contacts`: applied when it was decided
    own = _decoded(
        _raw("contact.tag_added", {"contact_id": "c-1", "tag": "hot"}, source="dripstream")
    )

    assert decide_record(own, record, _context(engine, WorkerMetrics())) is Decided.INPUT
    assert not record


def test_an_id_reused_for_another_event_is_dead_lettered_and_not_stored() -> None:
    engine, metrics, record = _engine(), WorkerMetrics(), BatchRecord()
    first = _decoded(_raw("contact.tag_added", {"contact_id": "c-1", "tag": "hot"}))
    decide_record(first, record, _context(engine, metrics))
    other = _decoded(_raw("contact.tag_added", {"contact_id": "c-1", "tag": "cold"}))
    again = BatchRecord()

    assert decide_record(other, again, _context(engine, metrics)) is Decided.INPUT

    assert again.stored == []
    assert [row.topic for row in again.outbox] == ["dlq"]


class _FailingEngine(Engine):
    def handle(self, *args: Any, **kwargs: Any) -> list[CloudEvent]:
        raise KeyError("a bug")


def test_an_engine_failure_is_dead_lettered_and_says_to_rebuild() -> None:
    document = validate_definition_document({"account": ACCOUNT, "sequences": [sequence()]})
    engine, metrics, record = (
        _FailingEngine(Catalog.from_document(document)),
        WorkerMetrics(),
        BatchRecord(),
    )
    tagged = _decoded(_raw("contact.tag_added", {"contact_id": "c-1", "tag": "hot"}))

    decided = decide_record(tagged, record, _context(engine, metrics))

    assert decided is Decided.ENGINE_FAILED
    assert record.stored == []
    letter = orjson.loads(record.outbox[0].value)
    assert (letter["field"], letter["reason"]) == (
        "engine",
        "the engine failed on it: KeyError: 'a bug'",
    )


def test_a_sequence_command_is_kept_as_the_change_the_others_adopt() -> None:
    engine, record = _engine(), BatchRecord()
    document = {"account": ACCOUNT, "sequences": [sequence(id="second", name="Second")]}
    applied = _decoded(_raw("sequence.applied", document, subject="sequences"))

    decided = decide_record(applied, record, _context(engine, WorkerMetrics()))

    assert decided is Decided.DEFINITION_CHANGE
    assert record.definition is not None
    changed, deleted, at, _occurrence = record.definition
    assert [s["id"] for s in changed["sequences"]] == ["second"]
    assert (deleted, at) == ([], datetime(2027, 7, 6, 15, 0, tzinfo=UTC))
