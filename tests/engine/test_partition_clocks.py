"""The engine under a worker's event clock: each partition keeps its own clock, and one
that lags still decides in minutes the others have left behind."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from aggregates.engine import Engine
from schemas.envelope import CloudEvent, parse_time
from schemas.validation import decode_event
from tests.engine.helpers import definitions, event, sequence

PARTITION = {"c-0": 0, "c-1": 1, "c-2": 2}


def at(clock: str) -> datetime:
    return parse_time(f"2027-05-04T{clock}Z")


def fed(engine: Engine, clock: str, kind: str, contact: str, **data: Any) -> list[CloudEvent]:
    item = event(kind, f"2027-05-04T{clock}Z", contact_id=contact, **data)
    return engine.handle(decode_event(orjson.dumps(item)), partition=PARTITION[contact])


def test_a_lagging_partition_finds_its_minutes_still_counted() -> None:
    # given one a minute, and three contacts in three partitions
    engine = Engine(partition_of=PARTITION.__getitem__)
    seq = sequence(
        throttle_per_minute=1,
        steps=[{"id": "s1", "type": "add_tag", "tag": "x"}],
        triggers=[{"type": "contact_tagged", "tags": ["go"]}],
    )
    engine.define(definitions(seq), at("15:00:00"), "defs")
    engine.expect_partitions(PARTITION.values())
    outputs: list[CloudEvent] = []
    for contact in PARTITION:
        outputs += fed(engine, "15:00:00", "contact.created", contact)
    # when partition 0 runs ten minutes ahead before the others read their tags at 15:01
    outputs += fed(engine, "15:01:00", "contact.tag_added", "c-0", tag="go")
    outputs += fed(engine, "15:11:00", "contact.updated", "c-0", state="NY")
    for second, contact in ((10, "c-1"), (20, "c-2")):
        outputs += fed(engine, f"15:01:{second}", "contact.tag_added", contact, tag="go")
        outputs += engine.advance(at("15:20:00"), partition=PARTITION[contact])
    # then no minute holds more than one execution: 15:01 was not forgotten
    minutes = [e.time.strftime("%H:%M") for e in outputs if e.type == "step.executed"]
    assert sorted(minutes) == ["15:01", "15:02", "15:03"]


def test_a_notice_a_lagging_partition_adds_to_a_sent_minute_keeps_its_own_id() -> None:
    # given owner changes to u-7 for contacts in two partitions, in the same minute
    engine = Engine(partition_of=PARTITION.__getitem__)
    seq = sequence(
        steps=[{"id": "own", "type": "change_owner", "owner_id": "u-7"}],
        triggers=[{"type": "contact_tagged", "tags": ["go"]}],
    )
    engine.define(definitions(seq), at("15:00:00"), "defs")
    outputs: list[CloudEvent] = []
    outputs += fed(engine, "15:00:00", "contact.created", "c-0", phone="+12125550100")
    outputs += fed(engine, "15:00:00", "contact.created", "c-1", phone="+12125550101")
    outputs += fed(engine, "15:01:00", "contact.tag_added", "c-0", tag="go")
    # when partition 0 passes the minute (its notice is sent) before partition 1 tags c-1
    outputs += engine.advance(at("15:05:00"), partition=0)
    outputs += fed(engine, "15:01:30", "contact.tag_added", "c-1", tag="go")
    outputs += engine.advance(at("15:05:00"), partition=1)
    # then both owners' notices go out, under ids of their own
    notices = [e for e in outputs if e.type == "notify.sms"]
    assert sorted(e.data["contact_id"] for e in notices) == ["c-0", "c-1"]
    assert len({e.id for e in notices}) == 2


def test_the_engine_tells_how_much_state_it_holds() -> None:
    # given a step due in an hour for two contacts, one of whom then leaves
    engine = Engine(partition_of=PARTITION.__getitem__)
    seq = sequence(
        steps=[
            {
                "id": "s1",
                "type": "add_tag",
                "tag": "x",
                "delay": {"kind": "default", "amount": 1, "unit": "hours"},
            }
        ],
        triggers=[{"type": "contact_tagged", "tags": ["go"]}],
    )
    engine.define(definitions(seq), at("15:00:00"), "defs")
    for contact in ("c-0", "c-1"):
        fed(engine, "15:00:00", "contact.tag_added", contact, tag="go")
    fed(engine, "15:01:00", "contact.opted_out", "c-1")
    # then both timers are in the heaps, one of them stale, and one enrollment is live
    sizes = engine.sizes()
    assert sizes["contacts"] == 2
    assert sizes["contacts_with_enrollments"] == 1
    assert sizes["enrollments_ever"] == 2
    assert (sizes["timers_in_heap"], sizes["timers_live"]) == (2, 1)
    assert engine.pending_timers() == 1  # the cancelled one is no timer to wait for
    # and once both are due, only the live one counts as fired
    engine.advance(at("17:00:00"))
    assert engine.timers_fired == 1


def test_a_live_clock_decides_a_late_timer_when_it_fires_under_the_hours_of_then() -> None:
    # given an SMS due at 20:50 in New York (00:50Z), inside the quiet hours (08:00-21:00)
    seq = sequence(
        steps=[
            {
                "id": "s1",
                "type": "send_sms",
                "text": "x",
                "delay": {"kind": "default", "amount": 10, "unit": "minutes"},
            }
        ],
    )
    outputs: dict[bool, list[CloudEvent]] = {}
    for live in (False, True):
        engine = Engine(live=live)
        engine.define(definitions(seq), parse_time("2027-05-05T00:40:00Z"), "defs")
        for kind in ("contact.created", "contact.tag_added"):
            item = event(
                kind,
                "2027-05-05T00:40:00Z",
                contact_id="c-0",
                phone="+12125550101",
                timezone="America/New_York",
                tag="hot",
            )
            engine.handle(decode_event(orjson.dumps(item)))
        # when the clock next moves at 21:10 (a worker down for twenty minutes)
        outputs[live] = engine.advance(parse_time("2027-05-05T01:10:00Z"))
        assert engine.timers_fired == 1  # run or deferred, it fired
    # then a history decides it on time; a live clock at 21:10, which holds it to 08:00
    [sent] = [e for e in outputs[False] if e.type == "sms.send"]
    assert sent.time == parse_time("2027-05-05T00:50:00Z")
    assert [e.type for e in outputs[True]] == ["step.deferred"]
    deferred = outputs[True][0]
    assert deferred.time == parse_time("2027-05-05T01:10:00Z")
    assert (deferred.data["reason"], deferred.data["to"]) == ("quiet_hours", "2027-05-05T12:00:00Z")


def test_a_fanned_out_request_is_decided_by_each_copy_for_its_own_partition() -> None:
    # given contacts on partitions 0, 1 and 2, two of them on line-1
    engine = Engine(partition_of=PARTITION.__getitem__)
    engine.define(definitions(sequence(triggers=[])), at("15:00:00"), "defs")
    for contact, line in (("c-0", "line-1"), ("c-1", None), ("c-2", "line-1")):
        fed(engine, "15:00:00", "contact.created", contact, phone="+12125550101", line_id=line)
    # when the request by line comes as one copy per partition (streams/routing.fan_out)
    enrolled: dict[int, list[str]] = {}
    for partition in (0, 1, 2):
        copy = event(
            "enrollment.requested",
            "2027-05-04T15:01:00Z",
            subject=f"fan-out:{partition}:0",
            sequence_id="seq",
            line_id="line-1",
            on_partition=partition,
        )
        outputs = engine.handle(decode_event(orjson.dumps(copy)), partition=partition)
        enrolled[partition] = [e.subject or "" for e in outputs if e.type == "enrollment.enrolled"]
    # then each copy enrolls its own partition's contacts on the line, once
    assert enrolled == {0: ["c-0"], 1: [], 2: ["c-2"]}


def test_a_minutes_owner_notices_wait_for_every_partition_to_leave_it() -> None:
    # given 21 contacts over three partitions, each given an owner in the 15:05 minute
    def partition_of(contact: str) -> int:
        return int(contact.split("-")[1]) % 3

    engine = Engine(partition_of=partition_of)
    seq = sequence(steps=[{"id": "own", "type": "change_owner", "owner_id": "u-7"}])
    engine.define(definitions(seq), at("15:00:00"), "defs")
    engine.expect_partitions({0, 1, 2})
    contacts = [f"c-{n}" for n in range(21)]
    outputs: list[CloudEvent] = []

    def feed(clock: str, kind: str, contact: str, **data: Any) -> None:
        item = event(kind, f"2027-05-04T{clock}Z", contact_id=contact, **data)
        decoded = decode_event(orjson.dumps(item))
        outputs.extend(engine.handle(decoded, partition=partition_of(contact)))

    for contact in contacts:
        feed("15:00:00", "contact.created", contact, phone="+12125550101")
    # when partition 0 reads its tags and runs on to 15:10 before the others read theirs
    for partition in (0, 1, 2):
        mine = [c for c in contacts if partition_of(c) == partition]
        for second, contact in enumerate(mine):
            feed(f"15:05:{second:02d}", "contact.tag_added", contact, tag="hot")
        feed("15:10:00", "contact.updated", mine[0], state="NY")
        outputs.extend(engine.advance(at("15:10:00"), partition=partition))
    # then the owner hears of them once, in one summary, as a replay would say it
    notices = [e for e in outputs if e.type == "notify.sms"]
    assert [n.data["body"] for n in notices] == ["You have been assigned to a group of contacts"]
    assert notices[0].time == at("15:06:00")
