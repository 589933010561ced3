"""The benchmark's synthetic history: deterministic, valid where it means to be, and real work
for the engine (enrollments and SMS), so that bench/bench_replay.py measures something."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import orjson
import pytest

from bench.generate_history import (
    START,
    TRIGGER_TYPES,
    HistorySpec,
    build_definitions,
    iter_history,
    main,
    write_history,
)
from schemas.definitions import load_definition_file, validate_definition_document
from schemas.envelope import CloudEvent, parse_time
from schemas.validation import EventRejected, decode_event
from streams.embedded import RejectedLine, replay

SMALL = HistorySpec(events=2_000, sequences=100, contacts=100_000, seed=11, bad_every=97)
INPUT_TYPES = {
    "contact.created",
    "contact.updated",
    "contact.tag_added",
    "contact.tag_removed",
    "contact.disposition_changed",
    "contact.dnc_changed",
    "contact.opted_out",
    "contact.opted_in",
    "call.completed",
    "message.received",
    "appointment.changed",
    "lead.email_received",
    "enrollment.requested",
}


@pytest.fixture(scope="module")
def lines() -> list[bytes]:
    return list(iter_history(SMALL))


@pytest.fixture(scope="module")
def decoded(lines: list[bytes]) -> list[CloudEvent]:
    return [decode_event(line) for number, line in enumerate(lines, 1) if number % 97]


def test_the_same_seed_gives_the_same_bytes_and_another_seed_does_not(lines: list[bytes]) -> None:
    assert list(iter_history(SMALL)) == lines
    assert build_definitions(SMALL) == build_definitions(SMALL)
    other = HistorySpec(events=2_000, seed=12, bad_every=97)
    assert list(iter_history(other)) != lines


def test_it_writes_the_asked_number_of_valid_events_plus_the_bad_lines(lines: list[bytes]) -> None:
    bad = [number for number in range(1, len(lines) + 1) if number % 97 == 0]
    assert len(lines) - len(bad) == SMALL.events
    assert lines[-1]
    assert all(b"\n" not in line for line in lines)


def test_every_line_decodes_except_the_deliberate_bad_ones(lines: list[bytes]) -> None:
    for number, line in enumerate(lines, 1):
        if number % 97 == 0:
            with pytest.raises(EventRejected):
                decode_event(line)
        else:
            decode_event(line)


def test_times_start_at_the_start_and_never_go_back(decoded: list[CloudEvent]) -> None:
    times = [event.time for event in decoded]
    assert times[0] == START
    assert all(earlier <= later for earlier, later in itertools.pairwise(times))
    assert times[-1] - times[0] > parse_time("2027-03-21T00:00:00Z") - START  # spread over weeks


def test_the_mix_holds_every_input_type_and_contacts_come_first(decoded: list[CloudEvent]) -> None:
    kinds = Counter(event.type for event in decoded)
    assert set(kinds) == INPUT_TYPES
    assert 0.05 < kinds["contact.created"] / SMALL.events < 0.15
    assert 0.18 < kinds["contact.tag_added"] / SMALL.events < 0.32
    created: set[str] = set()
    for event in decoded:
        if event.type == "contact.created":
            created.add(event.subject or "")
        elif event.subject is not None:
            assert event.subject in created, f"{event.id} is about a contact not created yet"


def test_contacts_have_us_phones_from_several_zones_and_some_an_explicit_zone(
    decoded: list[CloudEvent],
) -> None:
    created = [event.data for event in decoded if event.type == "contact.created"]
    phones = [data["phone"] for data in created if data.get("phone")]
    assert all(phone.startswith("+1") and len(phone) == 12 for phone in phones)
    assert len({phone[2:5] for phone in phones}) >= 10
    assert 0 < sum(1 for data in created if data.get("timezone")) < len(created) / 2


def test_the_definitions_validate_and_use_every_trigger_type() -> None:
    document = build_definitions(SMALL)
    checked = validate_definition_document(document)
    sequences = checked["sequences"]
    assert len(sequences) == 100
    assert {t["type"] for s in sequences for t in s["triggers"]} == set(TRIGGER_TYPES)
    assert len({step["type"] for s in sequences for step in s["steps"]}) >= 15
    assert {s["throttle_per_minute"] is None for s in sequences} == {True, False}
    assert all(2 <= len(s["steps"]) <= 8 for s in sequences)
    assert checked["account"]["ring_groups"]
    assert checked["account"]["quiet_hours"]


def test_replaying_it_enrolls_contacts_and_sends_sms(lines: list[bytes]) -> None:
    outputs: list[CloudEvent] = []
    rejected: list[RejectedLine] = []
    definitions = validate_definition_document(build_definitions(SMALL))
    stats = replay(definitions, lines, outputs.extend, rejected.append)
    kinds = Counter(event.type for event in outputs)
    assert [r.line for r in rejected] == [n for n in range(1, len(lines) + 1) if n % 97 == 0]
    assert stats.inputs == SMALL.events
    assert kinds["enrollment.enrolled"] > 100
    assert kinds["sms.send"] > 100
    assert kinds["step.executed"] > kinds["enrollment.enrolled"]
    assert stats.active_enrollments > 0


def test_the_command_writes_files_that_load(tmp_path: Path) -> None:
    assert (
        main(["--events", "300", "--seed", "5", "--bad-every", "50", "--out-dir", str(tmp_path)])
        == 0
    )
    files = write_history(HistorySpec(events=300, seed=5, bad_every=50), tmp_path / "again")
    [events] = tmp_path.glob("*.events.jsonl")
    assert events.read_bytes() == files.events.read_bytes()
    assert len(load_definition_file(files.sequences)["sequences"]) == 100
    summary = orjson.loads(files.summary.read_bytes())
    assert summary["lines"] == 306
    assert summary["bad_lines"] == 6
    assert sum(summary["types"].values()) == 300
