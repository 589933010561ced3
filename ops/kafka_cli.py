"""`dripstream worker`, `dripstream produce` and `dripstream sequences apply` (CONTRACT.md §4)."""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from ops.cli_groups import SubParsers, get_or_create_group
from ops.cli_time import moment
from ops.definition_files import load_or_explain
from ops.input_topics import (
    InputTopicsNotReadyError,
    ensure_input_topics,
    input_topics_problem,
)
from ops.service_errors import quiet_kafka_client
from ops.settings import (
    Settings,
    add_kafka_flags,
    listen_port,
    processes,
    schema_name,
)
from schemas.envelope import (
    ENGINE_SOURCE,
    STRUCTURED_HEADERS,
    CloudEvent,
    format_time,
    parse_time,
)
from schemas.registry import EVENT_TYPES, INPUT_TOPICS
from schemas.validation import EventRejected, decode_event, without_bom
from streams import routing
from streams.ordering import position_header

WATERMARK_EVERY = 500
# How long a record may wait for a broker that went away (a restart, a failover) before it
# is reported not published: the idempotent producer sends it, in order, once one answers.
OUTAGE_WAIT_MS = 5 * 60 * 1000
# Records reported one by one; the rest are counted.
REFUSALS_SHOWN = 20
# Seconds: the broker's default group.min.session.timeout.ms and group.max.session.timeout.ms;
# outside them its JoinGroup answers INVALID_SESSION_TIMEOUT.
SESSION_TIMEOUT_RANGE = (6.0, 1800.0)


def register(commands: SubParsers) -> None:
    env = Settings.from_environment()

    worker = commands.add_parser(
        "worker",
        help="run the engine on Kafka and PostgreSQL",
        description=(
            "Decide the input topics (KAFKA_BOOTSTRAP_SERVERS) into decisions, effects and "
            "contact changes, exactly once: each batch's inputs, timers and outbox are one "
            "PostgreSQL transaction (DATABASE_URL); an outbox relay publishes them."
        ),
    )
    add_kafka_flags(worker, env, database=True)
    worker.add_argument(
        "--clock",
        choices=("wall", "event"),
        default="wall",
        help="what drives the timers: the wall clock (default) or the inputs' event time",
    )
    worker.add_argument(
        "--metrics-port",
        type=listen_port,
        help="serve Prometheus metrics on PORT (with --processes N, process n on PORT+n)",
    )
    worker.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        help="the address the metrics are served on (0.0.0.0: every interface; default 127.0.0.1)",
    )
    worker.add_argument(
        "--no-relay", action="store_true", help="do not publish the outbox from this process"
    )
    worker.add_argument(
        "--schema",
        type=schema_name,
        default="public",
        help="PostgreSQL schema of the engine's tables",
    )
    worker.add_argument(
        "--processes",
        type=processes,
        default=1,
        help="workers to run in this consumer group, one process each (one per core);"
        " once a sequence has a throttle or owner changes, one of them takes every"
        " partition and the others stand by",
    )
    worker.add_argument(
        "--session-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long the group waits for a worker it no longer hears from before its"
        " partitions go to the others (default 30; the broker allows 6 to 1800). A worker"
        " stopped while a rebalance waits for a dead one leaves when that rebalance ends",
    )
    worker.add_argument(
        "--snapshot-every",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="how often a running worker keeps its engine as a snapshot, so a restart after"
        " a crash replays the store from there (default 600; 0: only when it stops"
        " cleanly). Nothing is decided while the engine is written, about 6 s for one of a"
        " million stored inputs",
    )
    worker.set_defaults(handler=run_worker)

    produce = commands.add_parser(
        "produce",
        help="publish a .jsonl of input events, keyed by subject",
        description=(
            "Publish each line of FILE, in order, to the input topic of its type (README"
            " 'Topics'), keyed by its subject. A request by tag, line or group goes out as one"
            " copy per partition of `commands`, and a lead e-mail keyed by the contact it"
            " creates, as the worker would pass them on. A line that is not a valid input"
            " event is reported with its number and not published (unless --raw); the exit"
            " status is then 1."
        ),
    )
    add_kafka_flags(produce, env)
    produce.add_argument("file", type=Path, help="a .jsonl of input CloudEvents, one per line")
    produce.add_argument(
        "--raw",
        action="store_true",
        help="publish lines as they are, valid or not (to exercise the dead letters)",
    )
    produce.add_argument(
        "--no-watermarks",
        action="store_true",
        help="do not write stream.watermark records"
        " (they let `worker --clock event` merge topics by event time)",
    )
    produce.set_defaults(handler=run_produce)

    sequences = get_or_create_group(
        commands, "sequences", help="sequence definitions and the sequences list"
    )
    apply = sequences.add_parser(
        "apply",
        help="publish sequence definitions to the commands topic",
        description=(
            "Check FILE as `replay --sequences` does (a file that is not valid: a message"
            " naming the sequence and field, exit 2, nothing published), then publish it as one"
            " `sequence.applied` command; running workers take it without a restart."
        ),
    )
    add_kafka_flags(apply, env)
    apply.add_argument("file", type=Path, help="a sequence file, YAML or JSON")
    apply.add_argument(
        "--time",
        type=moment,
        metavar="TIME",
        help="the command's time, RFC 3339 (default now): under `worker --clock event` a"
        " change to running enrollments takes effect at it, so give one inside the history",
    )
    apply.set_defaults(handler=run_apply)


def run_worker(args: argparse.Namespace) -> int:
    # Kafka clients load only here.
    from streams.worker import WorkerSettings  # noqa: PLC0415
    from streams.worker_launch import run_workers  # noqa: PLC0415

    if not args.database_url:
        print("dripstream worker: set DATABASE_URL or --database-url", file=sys.stderr)
        return 2
    if not args.snapshot_every >= 0:  # NaN too
        print("dripstream worker: --snapshot-every must not be negative", file=sys.stderr)
        return 2
    if not SESSION_TIMEOUT_RANGE[0] <= args.session_timeout <= SESSION_TIMEOUT_RANGE[1]:
        low, high = SESSION_TIMEOUT_RANGE
        print(
            f"dripstream worker: --session-timeout {args.session_timeout:g} is outside the"
            f" broker's default bounds, {low:g} to {high:g} seconds",
            file=sys.stderr,
        )
        return 2
    processes = max(1, args.processes)
    if args.metrics_port is not None:
        taken = ports_problem(args.metrics_host, args.metrics_port, processes)
        if taken is not None:
            print(f"dripstream worker: --metrics-port: {taken}", file=sys.stderr)
            return 2
    from streams.outages import log_as_service  # noqa: PLC0415 - heavy imports

    problem = deployment_problem(args.bootstrap, args.topic_prefix, args.database_url, args.schema)
    if problem is not None:
        print(f"dripstream worker: {problem}", file=sys.stderr)
        return 2
    log_as_service()
    return run_workers(
        WorkerSettings(
            bootstrap_servers=args.bootstrap,
            database_url=args.database_url,
            topic_prefix=args.topic_prefix,
            clock=args.clock,
            metrics_port=args.metrics_port,
            metrics_host=args.metrics_host,
            relay=not args.no_relay,
            schema=args.schema,
            session_timeout_ms=round(args.session_timeout * 1000),
            snapshot_every=args.snapshot_every,
        ),
        processes,
    )


def ports_problem(host: str, first: int, count: int) -> str | None:
    """Why the metrics ports (`first`, and one more per further process) cannot be served on
    `host`, said before anything starts (the worker would fail later, its tables made);
    None when each can be bound now. Bound as the metrics server binds, reusing an address
    a closed connection still holds."""
    for port in range(first, first + count):
        try:
            with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((host, port))
        except OSError as error:
            return f"cannot serve {host}:{port} ({error.strerror or error})"
    return None


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def deployment_problem(bootstrap: str, prefix: str, database_url: str, schema: str) -> str | None:
    """Checked once, before any worker process starts, so the mistakes a deployment makes
    once are said plainly: input topics that are not co-partitioned, or some of them
    missing, engine tables another deployment's topic prefix has, and a DATABASE_URL option
    the engine's store cannot pass on. None when none of these (the tables are made)."""
    from streams.store import (  # noqa: PLC0415
        AnotherDeploymentsStoreError,
        EngineStore,
        UnsupportedDatabaseOptionError,
    )

    problem = asyncio.run(input_topics_problem(bootstrap, prefix))
    if problem is not None:
        return problem
    try:
        EngineStore(database_url, schema, prefix=prefix).close()
    except (AnotherDeploymentsStoreError, UnsupportedDatabaseOptionError) as error:
        return str(error)
    return None


def run_produce(args: argparse.Namespace) -> int:
    quiet_kafka_client()
    try:
        # Lines end at LF alone, as `replay` reads them (a CR is JSON whitespace), and lose
        # their line ending (CRLF too) before they are decoded.
        lines = [line.rstrip(b"\r\n") for line in args.file.read_bytes().split(b"\n")]
    except OSError as error:
        print(f"dripstream produce: cannot read {args.file}: {error.strerror}", file=sys.stderr)
        return 2
    try:
        read = _records_of(args, lines)
        refused = asyncio.run(
            publish(
                args.bootstrap,
                args.topic_prefix,
                read.records,
                watermarks=not args.no_watermarks,
                lines=read.numbers,
            )
        )
    except InputTopicsNotReadyError as error:
        print(f"dripstream produce: {error}; nothing published", file=sys.stderr)
        return 2
    _say_refused(args.file, refused, read.numbers)
    _say_passed_over(args.file, read.own, read.marks)
    out = len(read.records) - len(refused)
    lines_out = len(set(read.numbers) - {read.numbers[index] for index, _ in refused})
    copies = (
        ""
        if out == lines_out
        else f" from {lines_out} line(s): a request by tag, line or group is one per partition"
    )
    print(f"published {out} event(s){copies}", file=sys.stderr)
    return 1 if read.bad or refused else 0


@dataclass
class _Read:
    """A file's lines as records to publish, and what was left out."""

    records: list[tuple[str, bytes | None, bytes]] = field(default_factory=list)
    numbers: list[int] = field(default_factory=list)  # the line number of each record
    bad: int = 0  # lines that are not valid events (said on stderr)
    own: list[int] = field(default_factory=list)  # the engine's own contact changes
    marks: list[int] = field(default_factory=list)  # stream.watermark lines (a dump's)


def _records_of(args: argparse.Namespace, lines: list[bytes]) -> _Read:
    read = _Read()
    partitions: int | None = None  # of `commands`, asked for at the first request to fan out
    asked = False
    for number, line in enumerate(lines, start=1):
        raw = without_bom(line, number)
        if not raw.strip():
            continue
        try:
            event = decode_event(raw, as_input=True)
        except EventRejected as rejected:
            if args.raw:
                read.records.append((*_raw_route(raw), raw))
                read.numbers.append(number)
                continue
            print(f"dripstream produce: {args.file}: line {number}: {rejected}", file=sys.stderr)
            read.bad += 1
            continue
        if event.source == ENGINE_SOURCE:
            # A dump of the contacts topic holds the engine's own changes: the worker would
            # pass them over without a word (they were applied when decided), as replay does.
            read.own.append(number)
            continue
        if EVENT_TYPES[event.type].direction == "control":
            # A dump's watermarks are another push's promises: this one writes its own.
            read.marks.append(number)
            continue
        if not asked and routing.fans_out(event):
            partitions = asyncio.run(_partition_count(args.bootstrap, args.topic_prefix))
            asked = True
        placed = _placed(event, partitions or 0)
        if placed:
            read.records.extend(placed)
            read.numbers.extend([number] * len(placed))
            continue
        key = event.subject.encode() if event.subject else None
        read.records.append((EVENT_TYPES[event.type].topic, key, raw))
        read.numbers.append(number)
    return read


def _say_refused(file: Path, refused: list[tuple[int, str]], numbers: list[int]) -> None:
    """The records Kafka did not take: the first REFUSALS_SHOWN by line, the rest counted."""
    for index, reason in refused[:REFUSALS_SHOWN]:
        print(
            f"dripstream produce: {file}: line {numbers[index]}: not published: {reason}",
            file=sys.stderr,
        )
    if len(refused) > REFUSALS_SHOWN:
        # By kind: a broker away too long fails one record, and every later one fails on
        # the gap it leaves in the producer's sequence (OutOfOrderSequenceNumber).
        kinds = Counter(reason.split(":", 1)[0] for _, reason in refused[REFUSALS_SHOWN:])
        said = ", ".join(f"{kind} {count}" for kind, count in kinds.most_common())
        print(
            f"dripstream produce: {file}: {len(refused) - REFUSALS_SHOWN} more event(s) not"
            f" published ({said}); a line published again is decided once (its source and id"
            " repeat)",
            file=sys.stderr,
        )


def _say_passed_over(file: Path, own: list[int], marks: list[int]) -> None:
    """The lines of a topic dump that a push does not publish, counted with the first's."""
    if own:
        print(
            f"dripstream produce: {file}: {len(own)} event(s) with source 'dripstream' (the"
            f" first at line {own[0]}) are the engine's own contact changes: not published",
            file=sys.stderr,
        )
    if marks:
        print(
            f"dripstream produce: {file}: {len(marks)} stream.watermark event(s) (the first"
            f" at line {marks[0]}) were passed over: a push writes watermarks of its own",
            file=sys.stderr,
        )


def _placed(event: CloudEvent, partitions: int) -> list[tuple[str, bytes | None, bytes]]:
    """What the worker would pass on before deciding, passed on here instead, so that it
    lands in the stream where the line stands rather than after the inputs published
    behind it: a request by tag, line or group as one copy per partition of `commands`
    (none when their number is unknown: the worker makes them), and a lead e-mail keyed by
    the contact it will create. Empty for any other event, published as it is."""
    if routing.fans_out(event):
        rows = (
            routing.fan_out(event, partitions, lambda key: routing.kafka_partition(key, partitions))
            if partitions
            else []
        )
    elif event.type == "lead.email_received" and (to := routing.lead_destination(event)):
        rows = [routing.rerouted_lead(event, to)]
    else:
        rows = []
    return [(row.topic, row.key.encode() if row.key else None, row.value) for row in rows]


async def _partition_count(bootstrap: str, prefix: str) -> int | None:
    """How many partitions `commands` has; None when the broker does not say."""
    from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped, unused-ignore]  # noqa: PLC0415
    from aiokafka.errors import KafkaError  # type: ignore[import-untyped, unused-ignore]  # noqa: PLC0415

    from streams.outages import pace  # noqa: PLC0415 - Kafka clients load here

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    pace(producer)
    try:
        await producer.start()
        # Before `commands` alone is asked for (and made, on a broker that makes topics).
        await ensure_input_topics(producer, prefix)
        found = await producer.partitions_for(prefix + "commands")
    except KafkaError:
        return None
    finally:
        await producer.stop()
    return len(found) if found else None


def _raw_route(raw: bytes) -> tuple[str, bytes | None]:
    """Where a line published as it is goes: the input topic of its `type` (else `commands`:
    an output type goes to no output topic, where subscribers would take it for the
    engine's), keyed by its `subject` when it has a string one (so its dead letter lands in,
    and names, the contact's partition), else with no key."""
    try:
        envelope = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return "commands", None
    if not isinstance(envelope, dict):
        return "commands", None
    kind, subject = envelope.get("type"), envelope.get("subject")
    info = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    key = subject.encode() if isinstance(subject, str) and subject else None
    return (info.topic if info and info.topic in INPUT_TOPICS else "commands"), key


def run_apply(args: argparse.Namespace) -> int:
    quiet_kafka_client()
    document = load_or_explain(args.file)
    if document is None:
        return 2
    command = CloudEvent(
        # A new id each time: the engine takes a repeated source and id for a retry and
        # skips it, so a file applied again after another (to undo it) would be lost.
        id=f"apply-{uuid.uuid4().hex}",
        source="dripstream-cli",
        type="sequence.applied",
        time=args.time or datetime.now(UTC),
        subject="sequences",
        data=document,
    )
    try:
        refused = asyncio.run(
            publish(
                args.bootstrap, args.topic_prefix, [("commands", b"sequences", command.encode())]
            )
        )
    except InputTopicsNotReadyError as error:
        print(f"dripstream: {args.file}: not published: {error}", file=sys.stderr)
        return 2
    if refused:
        print(f"dripstream: {args.file}: not published: {refused[0][1]}", file=sys.stderr)
        return 1
    ids = ", ".join(str(s["id"]) for s in document.get("sequences") or ())
    print(f"published sequence definitions: {ids}", file=sys.stderr)
    return 0


async def publish(
    bootstrap: str,
    prefix: str,
    records: list[tuple[str, bytes | None, bytes]],
    *,
    watermarks: bool = False,
    lines: list[int] | None = None,
) -> list[tuple[int, str]]:
    """Publish in order. With `watermarks`, every WATERMARK_EVERY records and at the end a
    `stream.watermark` goes to every partition of every input topic, after the records it
    follows (the idempotent producer keeps each partition's order): a worker on the event
    clock then knows how far each topic is complete.

    Every record carries its place (`lines`: the file line each came from, copies of one
    line alike; else its index), so a worker decides records of the same time in this
    order, whatever topics they are on (streams/ordering.py).

    A watermark goes out only once every record before it was taken: it promises that its
    lines are out, and a line Kafka refused is not (after one, no more marks are sent).

    Returns the records Kafka refused (too large, say, or a broker away for longer than
    OUTAGE_WAIT_MS), by index, with the reason: the others still go out."""
    from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped, unused-ignore]  # noqa: PLC0415
    from aiokafka.errors import KafkaError  # type: ignore[import-untyped, unused-ignore]  # noqa: PLC0415

    from streams.outages import pace  # noqa: PLC0415 - Kafka clients load here

    places = lines if lines is not None else list(range(1, len(records) + 1))
    # A later run of produce must come after this one: it starts later.
    run = time.time_ns() // 1000
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        linger_ms=10,
        request_timeout_ms=OUTAGE_WAIT_MS,
    )
    pace(producer)
    try:
        await producer.start()
        await ensure_input_topics(producer, prefix)
        latest: datetime | None = None
        marks: list[Any] = []
        sent: list[tuple[int, Any]] = []
        refused: list[tuple[int, str]] = []
        since_mark = 0
        for n, (topic, key, value) in enumerate(records, start=1):
            headers = [*STRUCTURED_HEADERS, position_header(run, places[n - 1])]
            try:
                sent.append(
                    (n - 1, await producer.send(prefix + topic, value, key=key, headers=headers))
                )
            except KafkaError as error:
                refused.append((n - 1, _kafka_reason(error)))
                continue
            if watermarks:
                moment = _time_of(value)
                latest = (
                    moment if latest is None or (moment is not None and moment > latest) else latest
                )
                since_mark += 1
                # Not between the copies of one line: the mark promises that line is out.
                # (After the last record, the closing mark below does it.)
                whole = n < len(records) and places[n] != places[n - 1]
                if since_mark >= WATERMARK_EVERY and whole and latest is not None and not refused:
                    refused += await _confirmed(sent)
                    sent = []
                    if not refused:
                        marks += await _watermark(producer, prefix, latest, (run, places[n - 1]))
                    since_mark = 0
        refused += await _confirmed(sent)
        if watermarks and latest is not None and places and not refused:
            marks += await _watermark(producer, prefix, latest, (run, places[-1]))
        lost_marks = await _confirmed(list(enumerate(marks)))
    finally:
        await producer.stop()
    if watermarks and refused:
        first = places[min(index for index, _ in refused)]
        print(
            f"dripstream produce: no watermark sent from line {first} on: a mark promises that"
            " the lines before it are out",
            file=sys.stderr,
        )
    if lost_marks:
        print(
            f"dripstream produce: {len(lost_marks)} watermark record(s) not published"
            f" ({lost_marks[0][1]}): workers on the event clock wait for the next ones",
            file=sys.stderr,
        )
    return sorted(refused)


async def _confirmed(sent: list[tuple[int, Any]]) -> list[tuple[int, str]]:
    """Wait for these sends to be taken; those Kafka refused, with the reason."""
    from aiokafka.errors import KafkaError  # type: ignore[import-untyped, unused-ignore]  # noqa: PLC0415

    refused = []
    for index, future in sent:
        try:
            await future
        except KafkaError as error:
            refused.append((index, _kafka_reason(error)))
    return refused


def _kafka_reason(error: Exception) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


async def _watermark(
    producer: Any, prefix: str, moment: datetime, place: tuple[int, int]
) -> list[Any]:
    run, line = place
    headers = [*STRUCTURED_HEADERS, position_header(run, line)]
    futures = []
    for topic in INPUT_TOPICS:
        for partition in sorted(await producer.partitions_for(prefix + topic)):
            mark = CloudEvent(
                # One id per record: a CloudEvent's source and id name one event.
                id=f"watermark-{format_time(moment)}-{run}:{line}/{topic}/{partition}",
                source="dripstream-produce",
                type="stream.watermark",
                time=moment,
                subject=None,
                data={"producer": "dripstream produce"},
            ).encode()
            futures.append(
                await producer.send(prefix + topic, mark, partition=partition, headers=headers)
            )
    return futures


def _time_of(value: bytes) -> datetime | None:
    try:
        return parse_time(str(orjson.loads(value)["time"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
