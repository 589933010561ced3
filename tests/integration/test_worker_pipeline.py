"""The engine on the real broker and PostgreSQL decides what the offline replay decides."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]

from aggregates.intake import ParsedLead, contact_id_for_lead, parse_lead_email
from schemas.checking import NUL_REASON, schema_document
from streams.input_records import BINARY_MODE, TOMBSTONE
from streams.routing import kafka_partition
from tests.integration.pipeline import (
    cli,
    comparable,
    free_port,
    metric,
    read_topics,
    start_worker,
    stop,
)

SCENARIO = Path(__file__).resolve().parents[1] / "engine" / "scenarios"

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


def _replay(tmp_path: Path, sequences: Path, events: Path) -> list[dict[str, object]]:
    out = tmp_path / "replay.jsonl"
    # A live worker's minute goes on: owner notices still gathering are not sent at the end.
    done = cli(
        "replay",
        "--sequences",
        str(sequences),
        "--events",
        str(events),
        "--out",
        str(out),
        "--leave-windows-open",
    )
    assert done.returncode == 0, done.stderr
    return [orjson.loads(line) for line in out.read_bytes().splitlines()]


def _apply_welcome(bootstrap: str, prefix: str) -> None:
    applied = cli(
        "sequences",
        "apply",
        str(SCENARIO / "welcome.yaml"),
        "--bootstrap",
        bootstrap,
        "--topic-prefix",
        prefix,
    )
    assert applied.returncode == 0, applied.stderr


Record = tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]] | None]


def _worker_reads(
    bootstrap: str, database_url: str, prefix: str, records: list[Record], letters: int = 0
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A worker (welcome applied) reads `records` (topic, key, value, headers), sent as they
    are by a producer of our own: the dead letters (`letters` of them are awaited) and the
    decisions, the worker still alive."""

    async def publish() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            for topic, key, value, headers in records:
                await producer.send_and_wait(prefix + topic, value, key=key, headers=headers)
        finally:
            await producer.stop()

    worker = start_worker(bootstrap, database_url, prefix)
    try:
        _apply_welcome(bootstrap, prefix)
        asyncio.run(publish())
        dead = (
            read_topics(bootstrap, prefix, ("dlq",), expect=letters, keys=True) if letters else []
        )
        decisions = read_topics(bootstrap, prefix, ("decisions",), quiet=4)
        assert worker.poll() is None, "the worker died"
    finally:
        stop(worker)
    return dead, decisions


def test_welcome_through_produce_and_worker_matches_replay(
    kafka_bootstrap: str, pipeline_prefix: str, fresh_database_url: str, tmp_path: Path
) -> None:
    prefix = pipeline_prefix
    expected = _replay(tmp_path, SCENARIO / "welcome.yaml", SCENARIO / "welcome.events.jsonl")
    worker = start_worker(kafka_bootstrap, fresh_database_url, prefix)
    try:
        _apply_welcome(kafka_bootstrap, prefix)
        produced = cli(
            "produce",
            str(SCENARIO / "welcome.events.jsonl"),
            "--bootstrap",
            kafka_bootstrap,
            "--topic-prefix",
            prefix,
        )
        assert produced.returncode == 0, produced.stderr
        got = read_topics(
            kafka_bootstrap, prefix, ("decisions", "effects", "contacts"), expect=len(expected) + 5
        )
    finally:
        stop(worker)
    assert any(e["type"] == "sequence.defined" for e in got)
    assert comparable(got) == comparable(expected)


# Loaded by the worker's interpreter at its start (a `sitecustomize` on its PYTHONPATH): a bug
# that meets one input, after changing the engine's state, as a half-done handling would.
PLANTED_BUG = """
from aggregates.engine import Engine

_handle = Engine.handle


def handle(self, event, *args, **kwargs):
    outputs = _handle(self, event, *args, **kwargs)
    if event.id == "w-6":
        raise RuntimeError("a bug met by this input")
    return outputs


Engine.handle = handle
"""


def test_an_input_the_engine_fails_on_is_dead_lettered_and_its_half_done_change_undone(
    kafka_bootstrap: str, pipeline_prefix: str, fresh_database_url: str, tmp_path: Path
) -> None:
    # given the welcome inputs, then a reply of c-101 at 23:20, and a worker whose engine
    # fails on w-6 (c-101's first reply, at 23:10) after deciding it in memory
    prefix = pipeline_prefix
    later_reply = (
        b'{"specversion":"1.0","id":"w-7","source":"twilio","type":"message.received",'
        b'"time":"2028-03-02T23:20:00Z","subject":"c-101","data":{"message_id":"m-10",'
        b'"contact_id":"c-101","channel":"sms","body":"hello again"}}'
    )
    lines = [*(SCENARIO / "welcome.events.jsonl").read_bytes().splitlines(), later_reply]
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    without = tmp_path / "without-w-6.jsonl"
    without.write_bytes(b"\n".join(line for line in lines if b'"id":"w-6"' not in line) + b"\n")
    expected = _replay(tmp_path, SCENARIO / "welcome.yaml", without)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(PLANTED_BUG)
    log = tmp_path / "worker.log"
    worker = start_worker(
        kafka_bootstrap,
        fresh_database_url,
        prefix,
        log_to=log,
        env={
            "PYTHONPATH": os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))
        },
    )
    try:
        _apply_welcome(kafka_bootstrap, prefix)
        produced = cli(
            "produce", str(events), "--bootstrap", kafka_bootstrap, "--topic-prefix", prefix
        )
        assert produced.returncode == 0, produced.stderr
        [letter] = read_topics(kafka_bootstrap, prefix, ("dlq",), expect=1)
        got = read_topics(
            kafka_bootstrap, prefix, ("decisions", "effects", "contacts"), expect=len(expected) + 5
        )
        assert worker.poll() is None, "the worker died"
    finally:
        stop(worker)
    # then w-6 is a dead letter naming the failure, and the worker decided the rest as a
    # replay without w-6 does: c-101, still enrolled, is removed by its reply at 23:20
    assert letter["field"] == "engine"
    assert letter["reason"] == "the engine failed on it: RuntimeError: a bug met by this input"
    assert b'"id":"w-6"' in letter["value"].encode()
    assert comparable(got) == comparable(expected)
    assert any(
        e["type"] == "enrollment.disenrolled" and e["data"]["contact_id"] == "c-101"
        for e in expected
    )
    assert "the engine failed on" in log.read_text()


def test_a_malformed_record_lands_on_the_dead_letter_topic_and_the_worker_goes_on(
    kafka_bootstrap: str, pipeline_prefix: str, fresh_database_url: str, tmp_path: Path
) -> None:
    prefix = pipeline_prefix
    lines = (SCENARIO / "welcome.events.jsonl").read_bytes().splitlines()
    broken = (
        b'{"specversion":"1.0","id":"bad-1","source":"crm","type":"contact.tag_added",'
        b'"time":"2028-03-02T22:41:30Z","subject":"c-100","data":{"contact_id":"c-100"}}'
    )
    # A well-formed effect command is no input: taken as one, it would be carried out.
    forged = (
        b'{"specversion":"1.0","id":"bad-2","source":"crm","type":"sms.send",'
        b'"time":"2028-03-02T22:41:40Z","subject":"c-100","data":{"effect_id":"fx-forged",'
        b'"step_id":"s1","sequence_id":"welcome","contact_id":"c-100","to":"+17205550142",'
        b'"from_line":"line-main","body":"forged"}}'
    )
    # Another event under an id decided minutes before ("w-3", the c-100 tag) is refused,
    # not skipped as a repeat of it.
    reused = (
        b'{"specversion":"1.0","id":"w-3","source":"crm","type":"contact.tag_added",'
        b'"time":"2028-03-02T22:41:50Z","subject":"c-100","data":{"contact_id":"c-100",'
        b'"tag":"other"}}'
    )
    # Too large to go whole into a letter (as text and hex it would pass the broker's limit)
    large = b"{" + b"x" * 600_000
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_bytes(
        b"\n".join([*lines[:3], broken, b"{not json", forged, reused, large, *lines[3:]]) + b"\n"
    )
    worker = start_worker(kafka_bootstrap, fresh_database_url, prefix)
    try:
        assert (
            cli(
                "sequences",
                "apply",
                str(SCENARIO / "welcome.yaml"),
                "--bootstrap",
                kafka_bootstrap,
                "--topic-prefix",
                prefix,
            ).returncode
            == 0
        )
        produced = cli(
            "produce", "--raw", str(mixed), "--bootstrap", kafka_bootstrap, "--topic-prefix", prefix
        )
        assert produced.returncode == 0, produced.stderr
        letters = read_topics(kafka_bootstrap, prefix, ("dlq",), expect=5)
        decisions = read_topics(kafka_bootstrap, prefix, ("decisions",), quiet=4)
        effects = read_topics(kafka_bootstrap, prefix, ("effects",), quiet=2)
    finally:
        stop(worker)
    assert len(letters) == 5
    for letter in letters:
        jsonschema.validate(letter, schema_document("dead_letter.schema.json"))
    [cut] = [letter for letter in letters if letter.get("truncated")]
    assert (cut["value_bytes"], cut["field"]) == (len(large), "event")
    assert bytes.fromhex(cut["value_hex"]) == large[: len(bytes.fromhex(cut["value_hex"]))]
    by_value = {letter["value"]: letter for letter in letters}
    # the field in `field`, the bare reason in `reason`, as in `replay --dlq`
    missing_tag = by_value[broken.decode()]
    assert (missing_tag["field"], missing_tag["reason"]) == ("data.tag", "is required")
    # an invalid line published with --raw keeps its subject as its key
    assert missing_tag["key"] == "c-100"
    assert by_value["{not json"]["key"] is None
    refused = by_value[forged.decode()]
    assert (refused["field"], refused["reason"]) == (
        "type",
        "'sms.send' is an output of the engine, not an input",
    )
    assert refused["topic"] == prefix + "commands"
    assert all(e["data"].get("effect_id") != "fx-forged" for e in effects)
    assert by_value[reused.decode()]["field"] == "id"
    assert "already names a different event" in by_value[reused.decode()]["reason"]
    assert all(letter["value"] for letter in letters)
    # The good records after the bad ones were still decided: c-101 was enrolled.
    assert any(
        d["type"] == "enrollment.enrolled" and d["data"]["contact_id"] == "c-101" for d in decisions
    )


def test_an_idle_worker_that_consumed_everything_reports_no_lag(
    kafka_bootstrap: str, pipeline_prefix: str, fresh_database_url: str, tmp_path: Path
) -> None:
    # given inputs that leave records the worker reads but does not decide: the producer's
    # watermarks on every input partition, a dead letter's original, and the engine's own
    # contact changes written back to `contacts` in the relay's transactions (each ending
    # in a marker)
    prefix = pipeline_prefix
    lines = (SCENARIO / "welcome.events.jsonl").read_bytes().splitlines()
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_bytes(b"\n".join([*lines, b"{not json"]) + b"\n")
    port = free_port()
    worker = start_worker(kafka_bootstrap, fresh_database_url, prefix, "--metrics-port", str(port))
    try:
        _apply_welcome(kafka_bootstrap, prefix)
        produced = cli(
            "produce", "--raw", str(mixed), "--bootstrap", kafka_bootstrap, "--topic-prefix", prefix
        )
        assert produced.returncode == 0, produced.stderr
        read_topics(kafka_bootstrap, prefix, ("dlq",), expect=1)
        # when the worker has read everything and goes idle
        lag = metric(port, "dripstream_consumer_lag")
        deadline = time.monotonic() + 60
        while lag != 0.0 and time.monotonic() < deadline:
            time.sleep(0.5)
            lag = metric(port, "dripstream_consumer_lag")
        decided = metric(port, "dripstream_events_in_total")
        batches = metric(port, "dripstream_batch_seconds_count")
        rebuilt, rebuilding = (
            metric(port, "dripstream_rebuilds_total"),
            metric(port, "dripstream_rebuilding"),
        )
    finally:
        stop(worker)
    # then nothing counts as lag
    assert lag == 0.0
    assert decided is not None
    assert decided >= len(lines)
    assert batches is not None
    assert batches >= 1
    # and the engine was built once for the assignment, and is not being rebuilt
    assert (rebuilt, rebuilding) == (1.0, 0.0)


def _applied_and_produced(
    bootstrap: str, prefix: str, database_url: str, sequences: Path, history: Path, outputs: int
) -> list[dict[str, Any]]:
    """What a worker decides once `sequences apply` and `produce` publish the two files: the
    decisions, effects and contact changes, read until `outputs` of them and the definition's
    `sequence.defined` are in."""
    worker = start_worker(bootstrap, database_url, prefix)
    try:
        applied = cli(
            "sequences", "apply", str(sequences), "--bootstrap", bootstrap, "--topic-prefix", prefix
        )
        assert applied.returncode == 0, applied.stderr
        produced = cli("produce", str(history), "--bootstrap", bootstrap, "--topic-prefix", prefix)
        assert produced.returncode == 0, produced.stderr
        return read_topics(
            bootstrap, prefix, ("decisions", "effects", "contacts"), expect=outputs + 1
        )
    finally:
        stop(worker)


BY_LINE_SEQUENCES = """\
account: {timezone: America/New_York, lines: {line-1: "+12125550000", line-2: "+12125550001"}}
sequences:
  - id: campaign-2
    name: By line
    process_on: every_day
    outbound_line: line-2
    steps: [{id: s1, type: send_sms, delay: {kind: none}, text: "Hello [FirstName]"}]
    triggers: []
"""


def test_a_request_by_line_reaches_the_contacts_of_every_partition(
    kafka_bootstrap: str, pipeline_prefix: str, fresh_database_url: str, tmp_path: Path
) -> None:
    # given contacts spread over the six partitions, some on line-2, and a request by line
    # keyed by the sequence (so it lands on a partition most of them are not on)
    sequences = tmp_path / "sequences.yaml"
    sequences.write_text(BY_LINE_SEQUENCES)
    events = [
        {
            "specversion": "1.0",
            "id": f"c-{n}",
            "source": "crm",
            "type": "contact.created",
            "time": "2027-07-06T13:00:00Z",
            "subject": f"c-{n}",
            "data": {
                "contact_id": f"c-{n}",
                "first_name": f"N{n}",
                "phone": f"+121255507{n:02d}",
                "timezone": "America/New_York",
                **({"line_id": "line-2"} if n % 2 == 0 else {}),
            },
        }
        for n in range(12)
    ]
    events.append(
        {
            "specversion": "1.0",
            "id": "g-3",
            "source": "admin",
            "type": "enrollment.requested",
            "time": "2027-07-06T14:40:00Z",
            "subject": "campaign-2",
            "data": {"sequence_id": "campaign-2", "line_id": "line-2"},
        }
    )
    history = tmp_path / "events.jsonl"
    history.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    expected = _replay(tmp_path, sequences, history)
    assert len([e for e in expected if e["type"] == "sms.send"]) == 6
    # when it goes through produce and the worker
    got = _applied_and_produced(
        kafka_bootstrap, pipeline_prefix, fresh_database_url, sequences, history, len(expected)
    )
    # then every contact on the line is enrolled and texted once, as in the replay
    assert comparable(got) == comparable(expected)


BY_TAG_SEQUENCES = """\
account: {timezone: America/New_York, lines: {line-1: "+12125550000"}}
sequences:
  - id: campaign-3
    name: By tag
    process_on: every_day
    outbound_line: line-1
    remove_on_response: true
    intake_address: leads@intake.example.com
    steps:
      - {id: s1, type: send_sms, delay: {kind: none}, text: "Hello [FirstName]"}
      - {id: s2, type: send_sms, delay: {kind: default, amount: 1, unit: days}, text: "Again"}
    triggers: []
"""


def _event(kind: str, n: int, at: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "specversion": "1.0", "id": f"{kind}-{n}", "source": "crm", "type": kind,
        "time": at, "subject": f"c-{n}", "data": {"contact_id": f"c-{n}", **data},
    }  # fmt: skip


def test_a_request_by_tag_and_lead_emails_keep_their_place_among_later_inputs(
    kafka_bootstrap: str, pipeline_prefix: str, fresh_database_url: str, tmp_path: Path
) -> None:
    # given tagged contacts over the six partitions, a request by tag, and a reply from each
    # of them a minute later (published right behind the request)
    sequences = tmp_path / "sequences.yaml"
    sequences.write_text(BY_TAG_SEQUENCES)
    count = 12
    created = {"first_name": "N", "timezone": "America/New_York", "tags": ["hot"]}
    events = [
        _event(
            "contact.created", n, "2027-07-06T13:00:00Z", {**created, "phone": f"+121255507{n:02d}"}
        )
        for n in range(count)
    ]
    events.append(
        {
            "specversion": "1.0",
            "id": "r-1",
            "source": "admin",
            "type": "enrollment.requested",
            "time": "2027-07-06T14:40:00Z",
            "subject": "campaign-3",
            "data": {"sequence_id": "campaign-3", "tag": "hot"},
        }
    )
    events += [
        _event(
            "message.received",
            n,
            "2027-07-06T14:41:00Z",
            {"message_id": f"m-{n}", "channel": "sms", "body": "ok"},
        )
        for n in range(count)
    ]
    # and lead e-mails, each contact they create replying a minute later
    for n in range(count, count + 4):
        body = f"First Name: L{n}\nPhone: (212) 555-08{n:02d}\nEmail: l{n}@example.com"
        lead = parse_lead_email(subject="Lead", body=body, sender="forms@example.com")
        assert isinstance(lead, ParsedLead)
        events.append(
            {
                "specversion": "1.0",
                "id": f"lead-{n}",
                "source": "forms",
                "type": "lead.email_received",
                "time": "2027-07-06T14:50:00Z",
                "data": {
                    "to": "leads@intake.example.com",
                    "from": "forms@example.com",
                    "subject": "Lead",
                    "body": body,
                },
            }
        )
        reply = _event(
            "message.received",
            n,
            "2027-07-06T14:51:00Z",
            {"message_id": f"m-{n}", "channel": "sms"},
        )
        reply["subject"] = reply["data"]["contact_id"] = contact_id_for_lead(lead)
        events.append(reply)
    history = tmp_path / "events.jsonl"
    history.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    expected = _replay(tmp_path, sequences, history)
    responded = [e for e in expected if e["type"] == "enrollment.disenrolled"]
    assert len(responded) == count + 4
    # when it goes through produce and the worker
    got = _applied_and_produced(
        kafka_bootstrap, pipeline_prefix, fresh_database_url, sequences, history, len(expected)
    )
    # then each contact (the leads' too) is enrolled, texted once and removed by its reply,
    # as in the replay
    assert comparable(got) == comparable(expected)


TIED_SEQUENCES = """\
account: {timezone: America/New_York, lines: {line-1: "+12125550000"}}
sequences:
  - id: hot
    name: Hot leads
    process_on: every_day
    outbound_line: line-1
    remove_on_response: true
    steps:
      - {id: s1, type: send_sms, delay: {kind: none}, text: "Hello [FirstName]"}
      - {id: s2, type: send_sms, delay: {kind: default, amount: 1, unit: hours}, text: "Again"}
    triggers: [{type: contact_tagged, tags: [hot]}]
  - id: cold
    name: Cold leads
    process_on: every_day
    outbound_line: line-1
    steps: [{id: s1, type: send_sms, delay: {kind: none}, text: "Still there?"}]
    triggers: []
"""


def test_inputs_of_the_same_second_on_different_topics_keep_the_files_order(
    kafka_bootstrap: str, pipeline_prefix: str, fresh_database_url: str, tmp_path: Path
) -> None:
    # given, at one second, a reply and then a tag for some contacts (the reply comes before
    # the enrollment: it removes no one), the other way round for others (it removes), and
    # a request by tag beside tags of the same second on either side of it
    sequences = tmp_path / "sequences.yaml"
    sequences.write_text(TIED_SEQUENCES)
    at = "2027-07-06T14:41:00Z"
    created = {"first_name": "N", "timezone": "America/New_York"}
    events = [
        _event(
            "contact.created", n, "2027-07-06T13:00:00Z", {**created, "phone": f"+121255507{n:02d}"}
        )
        for n in range(12)
    ]
    reply = {"channel": "sms", "body": "ok"}
    for n in range(6):
        events.append(_event("message.received", n, at, {**reply, "message_id": f"m-{n}"}))
        events.append(_event("contact.tag_added", n, at, {"tag": "hot"}))
    for n in range(6, 12):
        events.append(_event("contact.tag_added", n, at, {"tag": "hot"}))
        events.append(_event("message.received", n, at, {**reply, "message_id": f"m-{n}"}))
    request = {"sequence_id": "cold", "tag": "cold"}
    events.append({**_event("contact.tag_added", 0, at, {"tag": "cold"}), "id": "early-cold"})
    events.append({**_event("enrollment.requested", 0, at, request), "subject": "cold"})
    events[-1]["data"] = request
    events.append({**_event("contact.tag_added", 1, at, {"tag": "cold"}), "id": "late-cold"})
    history = tmp_path / "events.jsonl"
    history.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    expected = _replay(tmp_path, sequences, history)
    removed = {e["subject"] for e in expected if e["type"] == "enrollment.disenrolled"}
    assert removed == {f"c-{n}" for n in range(6, 12)}
    enrolled_cold = {
        e["subject"]
        for e in expected
        if e["type"] == "enrollment.enrolled" and e["data"]["sequence_id"] == "cold"
    }
    assert enrolled_cold == {"c-0"}
    # when it goes through produce and the worker (which used to take contacts before
    # messages and commands at the same time, whatever the file said)
    got = _applied_and_produced(
        kafka_bootstrap, pipeline_prefix, fresh_database_url, sequences, history, len(expected)
    )
    # then the decisions are the replay's
    assert comparable(got) == comparable(expected)


CODECS = ("gzip", "snappy", "lz4", "zstd")


def test_inputs_compressed_with_any_kafka_codec_are_decided(
    kafka_bootstrap: str, pipeline_prefix: str, fresh_database_url: str
) -> None:
    # An upstream producer of its own, as a CRM's would be, one codec per contact.
    prefix = pipeline_prefix
    worker = start_worker(kafka_bootstrap, fresh_database_url, prefix)
    try:
        _apply_welcome(kafka_bootstrap, prefix)
        asyncio.run(_publish_compressed(kafka_bootstrap, prefix))
        decisions = read_topics(kafka_bootstrap, prefix, ("decisions",), expect=12, quiet=8)
        assert worker.poll() is None, "the worker died"
    finally:
        stop(worker)
    enrolled = {d["data"]["contact_id"] for d in decisions if d["type"] == "enrollment.enrolled"}
    assert enrolled == {f"c-{codec}" for codec in CODECS}


async def _publish_compressed(bootstrap: str, prefix: str) -> None:
    for n, codec in enumerate(CODECS):
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, compression_type=codec)
        await producer.start()
        try:
            contact = f"c-{codec}"
            for kind, data in (
                ("contact.created", {"first_name": "Ann", "phone": f"+1720555010{n}"}),
                ("contact.tag_added", {"tag": "web-lead"}),
            ):
                event = {
                    "specversion": "1.0",
                    "id": f"{codec}-{kind}",
                    "source": "crm",
                    "type": kind,
                    "time": f"2028-03-02T22:4{n}:00Z",
                    "subject": contact,
                    "data": {"contact_id": contact, **data},
                }
                await producer.send_and_wait(
                    prefix + "contacts", orjson.dumps(event), key=contact.encode()
                )
        finally:
            await producer.stop()


def test_an_input_keyed_or_placed_off_its_contact_or_in_binary_mode_is_dead_lettered(
    kafka_bootstrap: str, pipeline_prefix: str, fresh_database_url: str
) -> None:
    prefix = pipeline_prefix

    def tag(contact: str, n: int) -> bytes:
        return orjson.dumps(
            {
                "specversion": "1.0",
                "id": f"k-{n}",
                "source": "crm",
                "type": "contact.tag_added",
                "time": f"2028-03-02T22:4{n}:00Z",
                "subject": contact,
                "data": {"contact_id": contact, "tag": "web-lead"},
            }
        )

    # CloudEvents' Kafka binary mode: attributes in headers, only the data as value; by
    # the binding, so is a record with those headers whose value happens to be an event,
    # unless its content type says structured mode
    binary = [("ce_specversion", b"1.0"), ("ce_type", b"contact.tag_added")]
    structured = [*binary, ("content-type", b"application/cloudevents+json; charset=utf-8")]
    capitalised = [*binary, ("Content-Type", b"Application/CloudEvents+JSON")]
    placed: list[Record] = [
        ("contacts", b"ann@example.com", tag("c-1", 1), None),  # keyed by e-mail
        ("contacts", None, tag("c-2", 2), None),  # no key
        ("messages", b"c-3", tag("c-3", 3), None),  # on another type's topic
        ("contacts", b"c-4", tag("c-4", 4), None),  # as it should be
        ("contacts", b"c-5", orjson.dumps({"contact_id": "c-5", "tag": "web-lead"}), binary),
        ("contacts", b"c-6", tag("c-6", 6), binary),
        ("contacts", b"c-7", tag("c-7", 7), structured),
        ("contacts", b"c-8", tag("c-8", 8), capitalised),
    ]
    letters, decisions = _worker_reads(kafka_bootstrap, fresh_database_url, prefix, placed, 5)
    reasons = sorted((letter["field"], letter["reason"]) for letter in letters)
    share = "so that a contact's records share a partition"
    assert reasons == [
        ("event", BINARY_MODE),
        ("event", BINARY_MODE),
        ("key", f"must be the subject 'c-1', {share}; the record has the key 'ann@example.com'"),
        ("key", f"must be the subject 'c-2', {share}; the record has no key"),
        ("type", "'contact.tag_added' belongs on the 'contacts' topic, not 'messages'"),
    ]
    # a binary-mode letter keeps the headers that held the event's attributes
    kept = [letter.get("headers") for letter in letters if letter["reason"] == BINARY_MODE]
    shown = [{"name": n, "value": v.decode(), "value_hex": v.hex()} for n, v in binary]
    assert kept == [shown, shown]
    enrolled = {d["data"]["contact_id"] for d in decisions if d["type"] == "enrollment.enrolled"}
    assert enrolled == {"c-4", "c-7", "c-8"}


def test_an_input_on_another_partition_than_its_keys_is_dead_lettered(
    kafka_bootstrap: str, pipeline_prefix: str, fresh_database_url: str
) -> None:
    # A producer with another partitioner (librdkafka's crc32) put a contact's facts on
    # partitions the worker's murmur2 does not: a request by tag or a call on the right
    # partition would not find them, without a word.
    prefix = pipeline_prefix

    def tag(contact: str) -> bytes:
        return orjson.dumps(
            {
                "specversion": "1.0", "id": f"p-{contact}", "source": "crm",
                "type": "contact.tag_added", "time": "2028-03-02T22:40:00Z",
                "subject": contact, "data": {"contact_id": contact, "tag": "web-lead"},
            }
        )  # fmt: skip

    async def publish() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            for contact, shift in (("c-1", 1), ("c-2", 0)):
                right = kafka_partition(contact, 6)
                await producer.send_and_wait(
                    prefix + "contacts",
                    tag(contact),
                    key=contact.encode(),
                    partition=(right + shift) % 6,
                )
        finally:
            await producer.stop()

    bootstrap = kafka_bootstrap
    worker = start_worker(bootstrap, fresh_database_url, prefix)
    try:
        _apply_welcome(bootstrap, prefix)
        asyncio.run(publish())
        letters = read_topics(bootstrap, prefix, ("dlq",), expect=1)
        decisions = read_topics(bootstrap, prefix, ("decisions",), quiet=4)
        assert worker.poll() is None, "the worker died"
    finally:
        stop(worker)
    right = kafka_partition("c-1", 6)
    assert [(letter["field"], letter["partition"]) for letter in letters] == [
        ("partition", (right + 1) % 6)
    ]
    assert letters[0]["reason"].startswith(
        f"the key 'c-1' belongs on partition {right} of 6, not {(right + 1) % 6}:"
    )
    enrolled = {d["data"]["contact_id"] for d in decisions if d["type"] == "enrollment.enrolled"}
    assert enrolled == {"c-2"}


def test_a_nul_a_tombstone_and_a_fact_under_the_engines_source_are_dead_lettered(
    kafka_bootstrap: str, pipeline_prefix: str, fresh_database_url: str
) -> None:
    # The worker keeps keys, ids and outputs in PostgreSQL text, which cannot hold U+0000: a
    # NUL in a record once stopped its partition for good, at every restart.
    prefix = pipeline_prefix

    def tag(contact: str, n: int, **envelope: str) -> bytes:
        event = {
            "specversion": "1.0",
            "id": f"n-{n}",
            "source": "crm",
            "type": "contact.tag_added",
            "time": f"2028-03-02T22:4{n}:00Z",
            "subject": contact,
            "data": {"contact_id": contact, "tag": "web-lead"},
        }
        return orjson.dumps({**event, **envelope})

    text = orjson.dumps(
        {
            "specversion": "1.0",
            "id": "n-5",
            "source": "dripstream",
            "type": "message.received",
            "time": "2028-03-02T22:45:00Z",
            "subject": "c-5",
            "data": {"message_id": "m-5", "contact_id": "c-5", "channel": "sms", "body": "hi"},
        }
    )
    placed: list[Record] = [
        ("contacts", b"c\x00k", b"not json", None),  # a NUL in the key of a bad record
        ("contacts", "c-\u00002".encode(), tag("c-\u00002", 2), None),  # and in the contact id
        ("contacts", b"c-3", None, None),  # a tombstone
        ("contacts", b"c-4", b"\xef\xbb\xbf" + tag("c-4", 4), None),  # a byte order mark first
        ("messages", b"c-5", text, None),  # an upstream fact under the engine's own source
        ("contacts", b"c-6", tag("c-6", 6), None),  # as it should be
    ]
    letters, decisions = _worker_reads(kafka_bootstrap, fresh_database_url, prefix, placed, 4)
    by_field = sorted((letter["field"], letter["reason"], letter["key_hex"]) for letter in letters)
    assert {(field, key) for field, _, key in by_field} == {
        ("event", b"c\x00k".hex()),
        ("event", b"c-3".hex()),
        ("source", b"c-5".hex()),
        ("subject", "c-\u00002".encode().hex()),
    }
    reasons = {field: reason for field, reason, _ in by_field if field != "event"}
    assert reasons["subject"] == NUL_REASON
    assert reasons["source"].endswith("a message.received from upstream needs a source of its own")
    assert TOMBSTONE in {reason for field, reason, _ in by_field if field == "event"}
    assert {letter["key"] for letter in letters} >= {"c\ufffdk"}
    # each letter keyed by its record's own bytes, the NUL included, not the text stand-in
    assert all(letter["_key_hex"] == letter["key_hex"] for letter in letters)
    enrolled = {d["data"]["contact_id"] for d in decisions if d["type"] == "enrollment.enrolled"}
    assert enrolled == {"c-4", "c-6"}

    # and a restart rebuilds the partitions from what was stored (the input read past its
    # byte order mark included) and goes on
    later = _worker_reads(
        kafka_bootstrap, fresh_database_url, prefix, [("contacts", b"c-7", tag("c-7", 7), None)]
    )[1]
    assert "c-7" in {d["data"]["contact_id"] for d in later if d["type"] == "enrollment.enrolled"}
