"""`dripstream topics`: the topics a deployment needs, and the order a dump is written in
(no broker here; tests/integration/test_topics_cli.py runs both on the real one)."""

from __future__ import annotations

import orjson

from ops.cli import build_parser
from ops.topics_cli import READ_MODEL_TOPICS, DumpedRecord, dump_lines, topic_plan


def _event(event_id: str, time: str, kind: str = "step.scheduled") -> bytes:
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": event_id,
            "source": "dripstream",
            "type": kind,
            "time": time,
            "subject": "c-1",
            "data": {"sequence_id": "welcome", "contact_id": "c-1"},
        }
    )


def test_the_plan_names_every_input_and_output_topic_of_the_prefix() -> None:
    plan = topic_plan("audit4.", 3)
    assert plan == {
        "audit4.contacts": 3,
        "audit4.calls": 3,
        "audit4.messages": 3,
        "audit4.appointments": 3,
        "audit4.intake": 3,
        "audit4.commands": 3,
        "audit4.decisions": 3,
        "audit4.effects": 3,
        "audit4.outcomes": 3,
        "audit4.dlq": 3,
        "audit4.relay-position": 1,
    }


def test_a_dump_is_ordered_by_event_time_then_topic_partition_and_offset() -> None:
    # given records of several topics and partitions, each partition in offset order, with
    # times that interleave across them (one written with an offset of +02:00)
    late = _event("d-late", "2028-03-02T10:00:00Z")
    early = _event("e-early", "2028-03-02T09:00:00Z", "sms.send")
    tie_decision = _event("d-tie", "2028-03-02T09:30:00Z")
    tie_contact = _event("c-tie", "2028-03-02T11:30:00+02:00", "contact.tag_added")
    tie_later_offset = _event("d-tie-2", "2028-03-02T09:30:00Z")
    records = [
        DumpedRecord("decisions", 1, 0, tie_decision),
        DumpedRecord("decisions", 1, 1, tie_later_offset),
        DumpedRecord("decisions", 0, 5, late),
        DumpedRecord("effects", 2, 0, early),
        DumpedRecord("contacts", 4, 7, tie_contact),
    ]
    # when they are dumped
    lines, skipped = dump_lines(records)
    # then by time, equal times by topic, partition and offset, each value byte for byte
    assert lines == [early, tie_contact, tie_decision, tie_later_offset, late]
    assert skipped == 0
    # and the same records in another order give the same file
    assert dump_lines(reversed(records)) == (lines, 0)


def test_a_late_inputs_decisions_stay_after_what_they_follow_in_their_partition() -> None:
    # given an enrollment at 10:05, then (a late opt-out timed 10:01, decided after it)
    # its disenrollment, both on one partition of decisions, and an SMS of 10:03 elsewhere
    enrolled = _event("d-enrolled", "2028-03-02T10:05:00Z", "enrollment.enrolled")
    removed = _event("d-removed", "2028-03-02T10:01:00Z", "enrollment.disenrolled")
    other = _event("e-other", "2028-03-02T10:03:00Z", "sms.send")
    records = [
        DumpedRecord("decisions", 0, 0, enrolled),
        DumpedRecord("decisions", 0, 1, removed),
        DumpedRecord("effects", 0, 0, other),
    ]
    # then the disenrollment is not put before the enrollment it ends
    lines, _ = dump_lines(records)
    assert lines == [other, enrolled, removed]
    assert dump_lines(reversed(records)) == (lines, 0)


def test_a_dump_keeps_each_record_on_one_line_and_counts_what_cannot_be_one() -> None:
    pretty = orjson.dumps(
        orjson.loads(_event("p", "2028-03-02T09:00:00Z")), option=orjson.OPT_INDENT_2
    )
    no_time = b'{"type":"contact.created","data":{"contact_id":"c-9"}}'
    records = [
        DumpedRecord("contacts", 0, 0, pretty),
        DumpedRecord("contacts", 0, 1, b"{not json"),
        DumpedRecord("contacts", 0, 2, None),  # a tombstone
        DumpedRecord("contacts", 0, 3, b'["a list"]'),
        DumpedRecord("contacts", 0, 4, no_time),
    ]
    lines, skipped = dump_lines(records)
    # a record without a time keeps its place in its partition (the read models report it)
    assert lines == [orjson.dumps(orjson.loads(pretty)), no_time]
    assert skipped == 3


def test_the_commands_and_their_defaults() -> None:
    parser = build_parser("topics")
    dump = parser.parse_args(["topics", "dump"])
    assert dump.topics == READ_MODEL_TOPICS == ("decisions", "effects", "contacts", "outcomes")
    assert dump.out is None
    chosen = parser.parse_args(["topics", "dump", "--topics", "decisions, outcomes,,decisions"])
    assert chosen.topics == ("decisions", "outcomes")
    create = parser.parse_args(["topics", "create", "--partitions", "3"])
    assert (create.partitions, create.replication_factor) == (3, 1)
