"""The event-time merge of a partition group's topics (streams/ordering.py)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from schemas.envelope import CloudEvent, parse_time
from streams.ordering import (
    UNPLACED,
    GroupBuffer,
    Pending,
    position_header,
    position_of,
    timers_until,
)

TOPICS = ("p.contacts", "p.messages", "p.commands")


def pending(topic: str, offset: int, time: str, kind: str = "contact.tag_added") -> Pending:
    data: dict[str, Any] = {"contact_id": "c-1", "tag": "x"}
    event = CloudEvent(
        id=f"{topic}-{offset}",
        source="t",
        type=kind,
        time=parse_time(time),
        subject="c-1",
        data=data,
    )
    return Pending(topic, 0, offset, b"c-1", b"{}", event)


def test_records_wait_until_every_topic_is_read_up_to_their_time() -> None:
    buffer = GroupBuffer(TOPICS)
    buffer.add(pending("p.contacts", 0, "2027-01-01T10:05:00Z"))
    buffer.watermark("p.commands", parse_time("2027-01-01T23:00:00Z"))

    assert buffer.event_time_order(set()) == []  # messages may still hold something earlier

    buffer.add(pending("p.messages", 0, "2027-01-01T10:01:00Z"))
    buffer.watermark("p.messages", parse_time("2027-01-01T10:06:00Z"))
    decided = buffer.event_time_order(set())

    assert [(p.topic, p.offset) for p in decided] == [("p.messages", 0), ("p.contacts", 0)]
    assert buffer.complete_until() == parse_time("2027-01-01T10:05:00Z")


def test_a_definition_goes_first_whatever_its_time() -> None:
    buffer = GroupBuffer(TOPICS)
    for topic in TOPICS:
        buffer.watermark(topic, parse_time("2030-01-01T00:00:00Z"))
    buffer.add(pending("p.contacts", 0, "2027-01-01T10:00:00Z"))
    buffer.add(pending("p.commands", 0, "2029-06-01T00:00:00Z", kind="sequence.applied"))

    decided = buffer.event_time_order(set())

    assert [p.topic for p in decided] == ["p.commands", "p.contacts"]


def test_a_topic_counted_as_read_to_the_end_holds_nothing_back() -> None:
    buffer = GroupBuffer(TOPICS)
    buffer.add(pending("p.contacts", 0, "2027-01-01T10:00:00Z"))

    decided = buffer.event_time_order({"p.messages", "p.commands"})

    assert [p.offset for p in decided] == [0]


def test_timers_fire_before_the_moment_read_to_until_the_input_goes_quiet() -> None:
    # given a group read up to 10:05 (the producer's watermark on every topic)
    buffer = GroupBuffer(TOPICS)
    for topic in TOPICS:
        buffer.watermark(topic, parse_time("2027-01-01T10:05:00Z"))
    complete = buffer.complete_until()
    # then a timer due at 10:05 waits: an input of 10:05 may come next, and goes first
    assert timers_until(complete, finished=False, clock=None) == parse_time(
        "2027-01-01T10:04:59.999999Z"
    )
    # once the input has gone quiet, its end is the history's end, as in a replay
    assert timers_until(complete, finished=True, clock=None) == complete


def test_a_group_with_no_position_fires_to_its_clock_only_when_quiet() -> None:
    clock = parse_time("2027-01-01T09:00:00Z")
    assert timers_until(None, finished=False, clock=clock) is None
    assert timers_until(None, finished=True, clock=clock) == clock


def placed(
    topic: str, offset: int, time: str, line: int, kind: str = "contact.tag_added"
) -> Pending:
    item = pending(topic, offset, time, kind)
    return Pending(item.topic, 0, offset, item.key, item.raw, item.event, position=(1_000, line))


def test_records_of_one_moment_go_in_the_order_they_were_published() -> None:
    # given a reply (line 2) and a tag (line 3) of the same second on two topics
    buffer = GroupBuffer(TOPICS)
    buffer.add(placed("p.contacts", 0, "2027-01-01T10:00:00Z", line=3))
    buffer.add(placed("p.messages", 0, "2027-01-01T10:00:00Z", line=2, kind="message.received"))
    for topic in TOPICS:
        buffer.watermark(topic, parse_time("2027-01-01T10:00:00Z"), (1_000, 3))

    decided = buffer.event_time_order(set())

    # then the file's order, not the topics' (contacts ranks before messages)
    assert [p.topic for p in decided] == ["p.messages", "p.contacts"]


def test_a_tie_waits_for_a_topic_read_to_that_moment_but_not_that_line() -> None:
    # given messages read to 10:00 up to line 2 only: its line 4 of 10:00 may follow
    buffer = GroupBuffer(TOPICS)
    buffer.watermark("p.commands", parse_time("2027-01-01T11:00:00Z"), (1_000, 9))
    buffer.watermark("p.messages", parse_time("2027-01-01T10:00:00Z"), (1_000, 2))
    buffer.add(placed("p.contacts", 0, "2027-01-01T10:00:00Z", line=5))

    assert buffer.event_time_order(set()) == []

    buffer.add(placed("p.messages", 0, "2027-01-01T10:00:00Z", line=4, kind="message.received"))
    buffer.watermark("p.messages", parse_time("2027-01-01T10:00:00Z"), (1_000, 6))

    assert [p.topic for p in buffer.event_time_order(set())] == ["p.messages", "p.contacts"]


def test_without_positions_a_tie_goes_topic_by_topic_as_soon_as_the_time_is_read() -> None:
    buffer = GroupBuffer(TOPICS)
    buffer.watermark("p.commands", parse_time("2027-01-01T10:00:00Z"))
    buffer.add(pending("p.messages", 0, "2027-01-01T10:00:00Z", kind="message.received"))
    buffer.add(pending("p.contacts", 0, "2027-01-01T10:00:00Z"))

    assert [p.topic for p in buffer.event_time_order(set())] == ["p.contacts", "p.messages"]


def test_a_later_runs_record_of_the_last_moment_is_not_held_for_ever() -> None:
    # given a history pushed through (run 1000, read to its closing watermark at 17:00),
    # then a command published later with that time (run 2000, line 1: no watermark follows)
    buffer = GroupBuffer(TOPICS)
    for topic in TOPICS:
        buffer.watermark(topic, parse_time("2027-01-01T17:00:00Z"), (1_000, 900))
    late = pending("p.commands", 0, "2027-01-01T17:00:00Z", kind="enrollment.requested")
    buffer.add(replace(late, position=(2_000, 1)))
    # then it is decided: another run's lines say nothing of this one's
    assert [p.offset for p in buffer.event_time_order(set())] == [0]


def test_a_record_of_no_position_goes_after_the_placed_ones_of_its_moment() -> None:
    # (a copy the worker made of a request, a producer of its own): as commands went after
    # contacts before positions
    buffer = GroupBuffer(TOPICS)
    for topic in TOPICS:
        buffer.watermark(topic, parse_time("2027-01-01T10:00:00Z"), (1_000, 9))
    buffer.add(pending("p.commands", 0, "2027-01-01T10:00:00Z", kind="enrollment.requested"))
    buffer.add(placed("p.messages", 0, "2027-01-01T10:00:00Z", line=8, kind="message.received"))
    buffer.add(placed("p.contacts", 0, "2027-01-01T10:00:00Z", line=9))

    decided = buffer.event_time_order(set())

    assert [p.topic for p in decided] == ["p.messages", "p.contacts", "p.commands"]


def test_a_placed_record_is_not_held_by_watermarks_that_give_no_position() -> None:
    # a producer of its own writes watermarks without the header to calls
    buffer = GroupBuffer(TOPICS)
    buffer.watermark("p.messages", parse_time("2027-01-01T10:00:00Z"))
    buffer.watermark("p.commands", parse_time("2027-01-01T10:00:00Z"))
    buffer.add(placed("p.contacts", 0, "2027-01-01T10:00:00Z", line=3))

    assert [p.offset for p in buffer.event_time_order(set())] == [0]


@pytest.mark.parametrize(
    ("headers", "position"),
    [
        (
            [("content-type", b"application/cloudevents+json"), ("dripstream-position", b"17:4")],
            (17, 4),
        ),
        ([("dripstream-position", b"17")], UNPLACED),
        ([("dripstream-position", b"-1:4")], UNPLACED),
        ([("dripstream-position", b"")], UNPLACED),
        ([("dripstream-position", b"9223372036854775808:1")], UNPLACED),  # 2**63: no bigint
        ([("dripstream-position", b"1:9223372036854775808")], UNPLACED),
        ([("dripstream-position", b"9223372036854775807:1")], (2**63 - 1, 1)),
        ([], UNPLACED),
        (None, UNPLACED),
    ],
)
def test_the_position_header_is_read_or_passed_over(
    headers: list[tuple[str, bytes]] | None, position: tuple[int, int]
) -> None:
    assert position_of(headers) == position


def test_the_position_header_reads_back() -> None:
    assert position_of([position_header(1_764_000_000_000_000, 12)]) == (1_764_000_000_000_000, 12)


def test_what_a_group_waits_for_is_the_earliest_records_time_and_the_topics_behind_it() -> None:
    # given watermarks on contacts only (a CRM that writes them to its own topic)
    buffer = GroupBuffer(TOPICS)
    buffer.watermark("p.contacts", parse_time("2027-01-01T12:00:00Z"))
    buffer.add(pending("p.contacts", 0, "2027-01-01T10:05:00Z"))
    buffer.add(pending("p.contacts", 1, "2027-01-01T10:09:00Z"))

    assert buffer.event_time_order(set()) == []
    assert buffer.held_back(set()) == (
        parse_time("2027-01-01T10:05:00Z"),
        ["p.messages", "p.commands"],
    )

    # once messages and commands are read past it, nothing waits
    buffer.watermark("p.messages", parse_time("2027-01-01T12:00:00Z"))
    buffer.watermark("p.commands", parse_time("2027-01-01T12:00:00Z"))
    assert len(buffer.event_time_order(set())) == 2
    assert buffer.held_back(set()) is None


def test_a_topic_counted_as_read_to_the_end_holds_nothing() -> None:
    buffer = GroupBuffer(TOPICS)
    buffer.add(pending("p.contacts", 0, "2027-01-01T10:05:00Z"))
    assert buffer.held_back({"p.messages", "p.commands"}) is None


def test_what_was_read_counts_as_settled_only_once_what_came_before_it_is_decided() -> None:
    # given a record on contacts, a watermark read behind it, and messages not read at all
    buffer = GroupBuffer(TOPICS)
    buffer.add(pending("p.contacts", 4, "2027-01-01T10:05:00Z"))
    buffer.watermark("p.contacts", parse_time("2027-01-01T11:00:00Z"), offset=5)
    assert buffer.seen["p.contacts"][0] == parse_time("2027-01-01T11:00:00Z")
    # the record still waits (messages): a restart would read both again
    assert buffer.event_time_order(set()) == []
    assert "p.contacts" not in buffer.settled
    # when it is decided, the watermark behind it is settled too
    buffer.watermark("p.messages", parse_time("2027-01-01T12:00:00Z"), offset=0)
    buffer.watermark("p.commands", parse_time("2027-01-01T12:00:00Z"), offset=0)
    assert [p.offset for p in buffer.event_time_order(set())] == [4]
    assert buffer.settled["p.contacts"][0] == parse_time("2027-01-01T11:00:00Z")
    # a watermark read with nothing queued is settled at once
    assert buffer.settled["p.messages"][0] == parse_time("2027-01-01T12:00:00Z")


def test_a_resumed_group_holds_nothing_back_for_a_topic_read_past_before() -> None:
    # given a group that starts again: contacts was read to 15:00 at its recorded position,
    # under a producer's watermarks
    buffer = GroupBuffer(TOPICS)
    buffer.resume("p.contacts", (parse_time("2027-01-01T15:00:00Z"), *UNPLACED), True)
    buffer.watermark("p.messages", parse_time("2027-01-01T15:00:00Z"), offset=9)
    # when a command of 14:30 comes
    buffer.add(pending("p.commands", 3, "2027-01-01T14:30:00Z"))
    # then it is decided at once: no topic is behind it
    assert buffer.watermarked
    assert [p.offset for p in buffer.event_time_order(set())] == [3]


def test_the_engines_own_change_holds_back_no_record_of_its_moment() -> None:
    # given, on contacts, the engine's own tag written back, then a producer's tag (line 2);
    # on messages a reply of the same moment published after it (line 3)
    buffer = GroupBuffer(TOPICS)
    own = pending("p.contacts", 0, "2027-01-01T10:00:00Z")
    assert own.event is not None
    buffer.add(replace(own, event=replace(own.event, source="dripstream")))
    buffer.add(placed("p.contacts", 1, "2027-01-01T10:00:00Z", line=2))
    buffer.add(placed("p.messages", 0, "2027-01-01T10:00:00Z", line=3, kind="message.received"))
    for topic in TOPICS:
        buffer.watermark(topic, parse_time("2027-01-01T10:00:00Z"), (1_000, 3))
    # then the producer's order holds: the tag before the reply, the own change aside
    decided = buffer.event_time_order(set())
    assert [(p.topic, p.offset) for p in decided] == [
        ("p.contacts", 0),
        ("p.contacts", 1),
        ("p.messages", 0),
    ]
