"""`dripstream produce`: which topic and key each line is published with (no broker: the
publishing step is replaced by one that keeps what it was given)."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime
from pathlib import Path

import aiokafka  # type: ignore[import-untyped]
import orjson
import pytest
from aiokafka.errors import MessageSizeTooLargeError  # type: ignore[import-untyped]

from ops import kafka_cli
from ops.cli import build_parser
from tests.ops.conftest import Published

INVALID_WITH_SUBJECT = (
    b'{"specversion":"1.0","id":"bad-1","source":"crm","type":"contact.tag_added",'
    b'"time":"2028-03-02T22:41:30Z","subject":"c-200","data":{"contact_id":"c-200"}}'
)
VALID = (
    b'{"specversion":"1.0","id":"ok-1","source":"crm","type":"contact.tag_added",'
    b'"time":"2028-03-02T22:41:30Z","subject":"c-201","data":{"contact_id":"c-201","tag":"hot"}}'
)


def _produce(path: Path, *flags: str) -> int:
    args = build_parser("produce").parse_args(["produce", *flags, str(path)])
    code: int = args.handler(args)
    return code


def test_raw_invalid_lines_are_keyed_by_their_subject_when_they_have_one(
    tmp_path: Path, published: Published
) -> None:
    # given a file of a valid line and invalid ones: with a subject, a non-string one, none,
    # an array, and not JSON at all
    lines = [
        VALID,
        INVALID_WITH_SUBJECT,
        b'{"type":"contact.tag_added","subject":42}',
        b'{"type":"message.received"}',
        b'["c-9"]',
        b"{not json",
    ]
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    # when it is published as it is
    assert _produce(events, "--raw") == 0
    # then each line went out once, in order, keyed by its string subject or by nothing
    assert [(topic, key) for topic, key, _ in published] == [
        ("contacts", b"c-201"),
        ("contacts", b"c-200"),
        ("contacts", None),
        ("messages", None),
        ("commands", None),
        ("commands", None),
    ]
    assert [value for _, _, value in published] == lines


def test_without_raw_an_invalid_line_is_reported_and_not_published(
    tmp_path: Path, published: Published, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(INVALID_WITH_SUBJECT + b"\n" + VALID + b"\n")
    assert _produce(events) == 1
    assert [(topic, key) for topic, key, _ in published] == [("contacts", b"c-201")]
    assert "line 1: data.tag: is required" in capsys.readouterr().err


def test_the_engines_own_contact_changes_are_not_published_and_said_so(
    tmp_path: Path, published: Published, capsys: pytest.CaptureFixture[str]
) -> None:
    # given a dump of the contacts topic: the CRM's facts and the engine's own changes
    own = VALID.replace(b'"source":"crm"', b'"source":"dripstream"').replace(b"ok-1", b"own-1")
    events = tmp_path / "contacts.jsonl"
    events.write_bytes(b"\n".join([VALID, own, own.replace(b"own-1", b"own-2")]) + b"\n")
    # when it is published
    assert _produce(events) == 0
    # then the worker is not handed what it would pass over without a word
    assert [value for _, _, value in published] == [VALID]
    err = capsys.readouterr().err
    assert (
        f"{events}: 2 event(s) with source 'dripstream' (the first at line 2) are the engine's"
        " own contact changes: not published"
    ) in err


def test_a_dumps_watermarks_are_not_published_again_and_said_so(
    tmp_path: Path, published: Published, capsys: pytest.CaptureFixture[str]
) -> None:
    # given a dump of an input topic, holding another push's watermarks
    mark = (
        b'{"specversion":"1.0","id":"watermark-1","source":"dripstream-produce",'
        b'"type":"stream.watermark","time":"2028-03-02T22:41:30Z",'
        b'"data":{"producer":"dripstream produce"}}'
    )
    events = tmp_path / "contacts.jsonl"
    events.write_bytes(b"\n".join([mark, VALID]) + b"\n")
    # when it is published
    assert _produce(events) == 0
    # then only the fact goes out: the push writes promises of its own
    assert [value for _, _, value in published] == [VALID]
    assert (
        f"{events}: 1 stream.watermark event(s) (the first at line 1) were passed over"
        in capsys.readouterr().err
    )


def test_a_request_fanned_out_is_counted_as_its_copies_and_said_so(
    tmp_path: Path,
    published: Published,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def three(bootstrap: str, prefix: str) -> int:
        return 3

    monkeypatch.setattr(kafka_cli, "_partition_count", three)
    by_tag = (
        b'{"specversion":"1.0","id":"r-1","source":"crm","type":"enrollment.requested",'
        b'"time":"2028-03-02T22:41:30Z","subject":"tag:hot",'
        b'"data":{"sequence_id":"welcome","tag":"hot"}}'
    )
    events = tmp_path / "events.jsonl"
    events.write_bytes(VALID + b"\n" + by_tag + b"\n")
    assert _produce(events) == 0
    assert [topic for topic, _, _ in published] == ["contacts", *["commands"] * 3]
    assert capsys.readouterr().err.splitlines()[-1] == (
        "published 4 event(s) from 2 line(s): a request by tag, line or group is one per partition"
    )


FORGED_SMS = (
    b'{"specversion":"1.0","id":"x-1","source":"crm","type":"sms.send",'
    b'"time":"2028-03-02T22:41:30Z","subject":"c-201","data":{"effect_id":"fx-1",'
    b'"step_id":"s1","sequence_id":"q","contact_id":"c-201","to":"+12125550101",'
    b'"from_line":"line-1","body":"hi"}}'
)
OUTCOME = (
    b'{"specversion":"1.0","id":"x-2","source":"crm","type":"effect.sent",'
    b'"time":"2028-03-02T22:41:30Z","subject":"c-201","data":{"effect_id":"fx-1",'
    b'"provider":"twilio"}}'
)


def test_an_engine_output_is_refused_and_not_published(
    tmp_path: Path, published: Published, capsys: pytest.CaptureFixture[str]
) -> None:
    # given an effect command and a provider outcome among inputs: the effect processors
    # would carry out a forged sms.send taken from a file
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join([FORGED_SMS, VALID, OUTCOME]) + b"\n")
    # when it is published
    assert _produce(events) == 1
    # then only the input went out, and each refusal says what the line is
    assert [(topic, key) for topic, key, _ in published] == [("contacts", b"c-201")]
    err = capsys.readouterr().err
    assert "line 1: type: 'sms.send' is an output of the engine, not an input" in err
    assert "line 3: type: 'effect.sent' is an output of the effect processors" in err


def test_raw_outputs_go_to_commands_never_to_an_output_topic(
    tmp_path: Path, published: Published
) -> None:
    # given the same lines published as they are, to exercise the dead letters
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join([FORGED_SMS, OUTCOME]) + b"\n")
    assert _produce(events, "--raw") == 0
    # then they reach an input topic, where the worker refuses them into dlq
    assert [(topic, key) for topic, key, _ in published] == [
        ("commands", b"c-201"),
        ("commands", b"c-201"),
    ]


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[tuple[object, int]]:
    """What `dripstream worker` would run, instead of running it."""
    import streams.worker_launch  # noqa: PLC0415 - the Kafka clients load only in these tests

    kept: list[tuple[object, int]] = []

    def keep(settings: object, processes: int) -> int:
        kept.append((settings, processes))
        return 0

    monkeypatch.setattr(streams.worker_launch, "run_workers", keep)
    # (its checks of the topics and tables run against the real services elsewhere:
    # tests/integration/test_topics_cli.py)
    monkeypatch.setattr(kafka_cli, "deployment_problem", lambda *_: None)
    return kept


def _worker(*flags: str) -> int:
    args = build_parser("worker").parse_args(
        ["worker", "--database-url", "postgresql://u@127.0.0.1:1/d", *flags]
    )
    code: int = args.handler(args)
    return code


def test_the_worker_session_timeout_defaults_to_30_s_and_can_be_set(
    started: list[tuple[object, int]],
) -> None:
    assert _worker() == 0
    assert _worker("--session-timeout", "7.5") == 0
    assert [getattr(s, "session_timeout_ms", None) for s, _ in started] == [30_000, 7_500]


@pytest.mark.parametrize("seconds", ["5.9", "1800.5", "0", "-3"])
def test_a_session_timeout_the_broker_would_refuse_is_named_and_nothing_starts(
    seconds: str, started: list[tuple[object, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _worker("--session-timeout", seconds) == 2
    assert started == []
    assert f"--session-timeout {float(seconds):g} is outside" in capsys.readouterr().err


def test_the_worker_keeps_a_snapshot_every_ten_minutes_unless_told_otherwise(
    started: list[tuple[object, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _worker() == 0
    assert _worker("--snapshot-every", "0") == 0
    assert [getattr(s, "snapshot_every", None) for s, _ in started] == [600.0, 0.0]
    # a negative interval is named, and nothing starts
    assert _worker("--snapshot-every", "-1") == 2
    assert len(started) == 2
    assert "--snapshot-every must not be negative" in capsys.readouterr().err


def test_each_watermark_record_has_an_id_of_its_own() -> None:
    # A watermark goes to every partition of every input topic; CloudEvents' source and id
    # name one event, so each of those records needs its own id.
    sent: list[tuple[str, int, bytes]] = []

    class Producer:
        async def partitions_for(self, topic: str) -> set[int]:
            return {0, 1, 2}

        async def send(
            self, topic: str, value: bytes, partition: int, headers: list[tuple[str, bytes]]
        ) -> None:
            # the place in the run it follows: line 7 of the run started at 1000 µs
            assert headers == [
                ("content-type", b"application/cloudevents+json"),
                ("dripstream-position", b"1000:7"),
            ]
            sent.append((topic, partition, value))

    moment = datetime(2028, 3, 2, 22, 41, tzinfo=UTC)
    asyncio.run(kafka_cli._watermark(Producer(), "p.", moment, (1000, 7)))

    ids = [orjson.loads(value)["id"] for _, _, value in sent]
    assert len(sent) == 3 * 6
    assert len(set(ids)) == len(ids)
    assert {orjson.loads(value)["type"] for _, _, value in sent} == {"stream.watermark"}


def test_lines_end_at_lf_alone_as_replay_reads_them(
    tmp_path: Path, published: Published, capsys: pytest.CaptureFixture[str]
) -> None:
    # given a valid event with a bare CR as JSON whitespace, a CRLF line, and a bad line after
    with_cr = VALID.replace(b',"data"', b',\r"data"')
    events = tmp_path / "events.jsonl"
    events.write_bytes(with_cr + b"\n" + VALID + b"\r\n" + INVALID_WITH_SUBJECT + b"\n")
    # when it is published
    assert _produce(events) == 1
    # then the CR line is one event, the CRLF line goes without its CR, the bad line is line 3
    assert [value for _, _, value in published] == [with_cr, VALID]
    assert "line 3: data.tag: is required" in capsys.readouterr().err


class RecordingProducer:
    """aiokafka's producer as `publish` uses it, one partition a topic: what was sent, as
    (topic, type, line); a record whose id is in `refuse` is refused as too large."""

    sent: list[tuple[str, str, str]]
    refuse: frozenset[str] = frozenset()

    def __init__(self, **_: object) -> None:
        self.client = self  # its metadata: every topic there, with one partition

    async def fetch_all_metadata(self) -> RecordingProducer:
        return self

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0}

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def partitions_for(self, topic: str) -> set[int]:
        return {0}

    async def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[None]:
        run, line = dict(headers or [])["dripstream-position"].split(b":")
        assert run.isdigit()
        event = orjson.loads(value)
        self.sent.append((topic, event["type"], line.decode()))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if event["id"] in self.refuse:
            done.set_exception(MessageSizeTooLargeError())
        else:
            done.set_result(None)
        return done


def recording(
    monkeypatch: pytest.MonkeyPatch, refuse: frozenset[str] = frozenset()
) -> list[tuple[str, str, str]]:
    """`publish` sends to a RecordingProducer, a watermark due every 2 records; its record."""
    sent: list[tuple[str, str, str]] = []
    producer = type("Producer", (RecordingProducer,), {"sent": sent, "refuse": refuse})
    monkeypatch.setattr(aiokafka, "AIOKafkaProducer", producer)
    monkeypatch.setattr(kafka_cli, "WATERMARK_EVERY", 2)
    return sent


def test_every_record_carries_its_line_and_no_watermark_falls_between_copies_of_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given five records from three lines, the second line copied to three partitions, and
    # a watermark due every 2 records
    sent = recording(monkeypatch)

    def record(topic: str, kind: str) -> tuple[str, bytes | None, bytes]:
        event = {"specversion": "1.0", "id": kind, "source": "s", "type": kind,
                 "time": "2027-01-01T00:00:00Z", "subject": "c-1", "data": {}}  # fmt: skip
        return (topic, b"c-1", orjson.dumps(event))

    records = [
        record("contacts", "contact.tag_added"),
        *[record("commands", "enrollment.requested")] * 3,
        record("contacts", "contact.tag_removed"),
    ]
    # when it is published
    asyncio.run(kafka_cli.publish("x", "p.", records, watermarks=True, lines=[1, 2, 2, 2, 3]))
    # then each record carries its line, and the marks come after whole lines only
    events = [(topic, kind, line) for topic, kind, line in sent if kind != "stream.watermark"]
    assert events == [
        ("p.contacts", "contact.tag_added", "1"),
        ("p.commands", "enrollment.requested", "2"),
        ("p.commands", "enrollment.requested", "2"),
        ("p.commands", "enrollment.requested", "2"),
        ("p.contacts", "contact.tag_removed", "3"),
    ]
    kinds = [kind for _, kind, _ in sent]
    first_mark = kinds.index("stream.watermark")
    assert first_mark > max(n for n, kind in enumerate(kinds) if kind == "enrollment.requested")
    marks = [line for _, kind, line in sent if kind == "stream.watermark"]
    assert marks == ["2"] * 6 + ["3"] * 6  # line 2 whole (not inside it), then the closing one


def test_no_watermark_promises_a_line_kafka_did_not_take(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # given six lines, the third one Kafka refuses (too large; or a broker away too long)
    sent = recording(monkeypatch, refuse=frozenset({"e-3"}))
    records = [
        ("contacts", b"c-1", orjson.dumps({"specversion": "1.0", "id": f"e-{n}", "source": "s",
         "type": "contact.tag_added", "time": "2027-01-01T00:00:00Z", "subject": "c-1",
         "data": {}}))
        for n in range(1, 7)
    ]  # fmt: skip
    # when it is published with watermarks
    refused = asyncio.run(
        kafka_cli.publish("x", "p.", records, watermarks=True, lines=[1, 2, 3, 4, 5, 6])
    )
    # then the refused line is reported, the others still go out
    assert [index for index, _ in refused] == [2]
    assert refused[0][1].startswith("MessageSizeTooLargeError")
    assert [line for _, kind, line in sent if kind != "stream.watermark"] == list("123456")
    # and the marks stop before it: the one after line 2 went out, none after (a mark says
    # every line before it is out)
    assert [line for _, kind, line in sent if kind == "stream.watermark"] == ["2"] * 6
    assert "no watermark sent from line 3 on" in capsys.readouterr().err


def test_many_refusals_are_counted_by_reason_after_the_first_twenty(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # given a broker away too long: one record expired, the 29 after it refused on the gap
    refused = [(0, "LeaderNotAvailableError: expired")] + [
        (n, "OutOfOrderSequenceNumber") for n in range(1, 30)
    ]
    kafka_cli._say_refused(Path("h.jsonl"), refused, list(range(101, 131)))
    said = capsys.readouterr().err.splitlines()
    # then the first twenty are said by line, the rest counted by reason
    assert (
        said[0]
        == "dripstream produce: h.jsonl: line 101: not published: LeaderNotAvailableError: expired"
    )
    assert len(said) == 21
    assert said[-1].startswith(
        "dripstream produce: h.jsonl: 10 more event(s) not published (OutOfOrderSequenceNumber 10)"
    )


def _listening() -> socket.socket:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    return taken


def test_a_metrics_port_in_use_is_named_before_anything_starts(
    started: list[tuple[object, int]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # given another program serving the port (the deployment checks would make tables)
    checked: list[object] = []
    monkeypatch.setattr(kafka_cli, "deployment_problem", lambda *a: checked.append(a))
    with _listening() as taken:
        port = taken.getsockname()[1]
        # when a worker is asked to serve its metrics there
        code = _worker("--metrics-port", str(port))
    # then it refuses at once, naming it, with nothing checked, made or started
    assert code == 2
    assert f"--metrics-port: cannot serve 127.0.0.1:{port}" in capsys.readouterr().err
    assert (checked, started) == ([], [])


def test_each_process_metrics_port_is_checked(
    started: list[tuple[object, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    # given the port after a free one taken: the second of two processes would serve it
    with _listening() as taken:
        second = taken.getsockname()[1]
        if kafka_cli.ports_problem("127.0.0.1", second - 1, 1) is not None:
            pytest.skip(f"port {second - 1} is not free here")
        code = _worker("--metrics-port", str(second - 1), "--processes", "2")
    assert code == 2
    assert f"cannot serve 127.0.0.1:{second}" in capsys.readouterr().err
    assert started == []


def test_free_metrics_ports_start_the_workers(started: list[tuple[object, int]]) -> None:
    with _listening() as probe:
        port = probe.getsockname()[1]
    assert _worker("--metrics-port", str(port)) == 0
    assert [getattr(s, "metrics_port", None) for s, _ in started] == [port]
