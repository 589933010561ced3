"""`dripstream topics create` and `dripstream topics dump`: the deployment's topics made up
front (co-partitioned, not left to the broker's auto-create), and the output topics read
back into one `.jsonl` the read models load (`sequences list --history`, `history`,
`projections rebuild`)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson

from ops.atomic_output import WholeOrNothing, all_done
from ops.cli_groups import SubParsers, get_or_create_group
from ops.service_errors import quiet_kafka_client
from ops.settings import DEFAULT_PREFIX, Settings, add_kafka_flags, at_least_one
from projections.stream import READ_MODEL_TOPICS, merged_by_time
from schemas.envelope import parse_time
from schemas.registry import INPUT_TOPICS, OUTPUT_TOPICS
from streams.relay import POSITION_TOPIC  # one record per batch, all with one key

TOPIC_EXISTS = 36  # Kafka's TOPIC_ALREADY_EXISTS error code
STALLED_AFTER = 60.0  # seconds without progress before a dump gives up


def register(commands: SubParsers) -> None:
    env = Settings.from_environment()
    topics = get_or_create_group(
        commands, "topics", help="create the input and output topics; dump the output topics"
    )

    create = topics.add_parser(
        "create",
        help="create every input and output topic of the prefix (existing ones are kept)",
        description=(
            "Create the prefix's input topics (co-partitioned: the same number of partitions"
            " each), output topics and the relay's position topic (1 partition). Existing"
            " topics are kept; the exit status is 1 when the input topics are not"
            " co-partitioned."
        ),
    )
    add_kafka_flags(create, env)
    create.add_argument(
        "--partitions",
        type=at_least_one,
        default=6,
        help="partitions of each input and output topic (default 6; the position topic has 1)",
    )
    create.add_argument(
        "--replication-factor", type=at_least_one, default=1, help="replicas of each (default 1)"
    )
    create.set_defaults(handler=run_create)

    dump = topics.add_parser(
        "dump",
        help="write the output topics as one .jsonl the read models load",
        description=(
            "Read the topics (read_committed) from the beginning up to their ends when the"
            " command starts, and write every record's value as one JSON line: each"
            " partition in the order it was written, the partitions merged by event time"
            " (then topic, partition and offset)."
        ),
    )
    add_kafka_flags(dump, env)
    dump.add_argument("--out", type=Path, help="write here (default stdout)")
    dump.add_argument(
        "--topics",
        type=_names,
        default=READ_MODEL_TOPICS,
        help="comma-separated topics, without the prefix (default"
        f" {','.join(READ_MODEL_TOPICS)}; by default a missing `outcomes` is passed over:"
        " a deployment that never ran `effects` may not have it)",
    )
    dump.set_defaults(handler=run_dump)


def _names(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not names:
        raise argparse.ArgumentTypeError("name at least one topic")
    return names


# ---- create ------------------------------------------------------------------------------


def topic_plan(prefix: str, partitions: int) -> dict[str, int]:
    """Every topic of a deployment and its partition count."""
    plan = {prefix + name: partitions for name in INPUT_TOPICS + OUTPUT_TOPICS}
    plan[prefix + POSITION_TOPIC] = 1
    return plan


def run_create(args: argparse.Namespace) -> int:
    quiet_kafka_client()
    plan = topic_plan(args.topic_prefix, args.partitions)
    try:
        created, counts = asyncio.run(_create(args.bootstrap, plan, args.replication_factor))
    except TopicsError as error:
        print(f"dripstream topics create: {error}", file=sys.stderr)
        return 1
    kept = []
    for name in plan:
        state = "created" if name in created else "exists"
        print(f"{name}\t{counts.get(name, '?')} partition(s)\t{state}")
        if name not in created and counts.get(name, plan[name]) != plan[name]:
            kept.append(name)
    if kept:
        print(
            f"dripstream topics create: {len(kept)} existing topic(s) kept as they are, not"
            f" with {args.partitions} partitions ({', '.join(kept)}): topics are never"
            " changed here",
            file=sys.stderr,
        )
    problem = not_copartitioned(
        {name: counts.get(name, 0) for name in (args.topic_prefix + n for n in INPUT_TOPICS)}
    )
    if problem is not None:
        print(f"dripstream topics create: {problem}", file=sys.stderr)
        return 1
    return 0


class TopicsError(Exception):
    """The broker refused, or a topic could not be read; the message says which."""


async def _create(
    bootstrap: str, plan: dict[str, int], replication: int
) -> tuple[set[str], dict[str, int]]:
    """Creates what is missing; returns the names created and every topic's partition count."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]  # noqa: PLC0415

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="dripstream-topics")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in plan if name not in existing]
        created: set[str] = set()
        if missing:
            response = await admin.create_topics(
                [NewTopic(name, plan[name], replication) for name in missing]
            )
            for name, code, *rest in response.topic_errors:
                if code == 0:
                    created.add(name)
                elif code != TOPIC_EXISTS:  # made meanwhile by another client: fine
                    message = rest[0] if rest and rest[0] else f"error code {code}"
                    raise TopicsError(f"{name}: {message}")
        counts = {
            str(topic["topic"]): len(topic["partitions"])
            for topic in await admin.describe_topics()
            if topic["topic"] in plan
        }
        return created, counts
    finally:
        await admin.close()


async def input_partition_counts(bootstrap: str, prefix: str) -> dict[str, int]:
    """The partition count of each of the prefix's input topics that exists."""
    from aiokafka.admin import AIOKafkaAdminClient  # noqa: PLC0415

    from streams.outages import start_quietly  # noqa: PLC0415 - Kafka clients load here

    names = {prefix + name for name in INPUT_TOPICS}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="dripstream-topics")
    await start_quietly(admin)
    try:
        present = sorted(names & set(await admin.list_topics()))
        if not present:
            return {}
        return {
            str(topic["topic"]): len(topic["partitions"])
            for topic in await admin.describe_topics(present)
        }
    finally:
        await admin.close()


def not_copartitioned(counts: dict[str, int]) -> str | None:
    """What to say when the input topics' partition counts differ, else None."""
    if len(set(counts.values())) <= 1:
        return None
    listed = ", ".join(f"{name} {count}" for name, count in sorted(counts.items()))
    return (
        f"the input topics are not co-partitioned ({listed} partitions): a contact's"
        " events would reach different partition groups, decided apart; give every input"
        " topic the same count"
    )


def missing_inputs(counts: dict[str, int], prefix: str) -> str | None:
    """What to say when some of the prefix's co-partitioned input topics exist and others
    do not (the broker would make those at its default count), else None."""
    missing = [prefix + name for name in INPUT_TOPICS if prefix + name not in counts]
    if not counts or not missing:
        return None
    count = max(counts.values())
    return (
        f"input topics missing: {', '.join(missing)}; the broker would create them with its"
        f" default partition count, not the {count} of the others: make them first"
        f" ({create_command(prefix, count)})"
    )


def create_command(prefix: str, partitions: int | None = None) -> str:
    """The `topics create` that makes the prefix's topics, quoted: under another prefix
    than the default it must name it, or it would make the default's."""
    flags = "" if partitions is None else f" --partitions {partitions}"
    if prefix != DEFAULT_PREFIX:
        flags += f" --topic-prefix {prefix}"
    return f"`dripstream topics create{flags}`"


# ---- dump --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DumpedRecord:
    topic: str  # without the prefix
    partition: int
    offset: int
    value: bytes | None


_NO_TIME = datetime.min.replace(tzinfo=UTC)


def dump_lines(records: Iterable[DumpedRecord]) -> tuple[list[bytes], int]:
    """The records as JSON lines in a deterministic order the read models accept: the
    partitions merged by event `time` (then topic, partition and offset), each partition
    in the order it was written, so a late input's decisions stay after what they follow.
    A value that is not a JSON object (a tombstone, a foreign record) cannot
    be a line: it is left out and counted. Returns the lines and how many were left out."""
    kept: list[tuple[datetime, str, int, int, bytes]] = []
    skipped = 0
    for record in records:
        value = record.value
        try:
            parsed: Any = orjson.loads(value) if value is not None else None
        except orjson.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict) or value is None:
            skipped += 1
            continue
        if b"\n" in value or b"\r" in value:
            value = orjson.dumps(parsed)  # pretty-printed JSON: one line, same content
        kept.append((_time_of(parsed), record.topic, record.partition, record.offset, value))
    kept.sort(key=lambda item: item[3])  # each partition in the order it was written
    merged = merged_by_time(kept, lambda item: (item[1], item[2]), lambda item: item[:4])
    return [item[4] for item in merged], skipped


def _time_of(event: dict[str, Any]) -> datetime:
    try:
        return parse_time(str(event["time"]))
    except (KeyError, TypeError, ValueError):
        return _NO_TIME  # first, where the read models report it


def run_dump(args: argparse.Namespace) -> int:
    quiet_kafka_client()
    try:
        # Only the defaults' `outcomes` may be missing: a topic asked for by name may not.
        optional = frozenset({"outcomes"} if args.topics == READ_MODEL_TOPICS else ())
        records = asyncio.run(_read(args.bootstrap, args.topic_prefix, args.topics, optional))
    except TopicsError as error:
        print(f"dripstream topics dump: {error}", file=sys.stderr)
        return 2
    lines, skipped = dump_lines(records)
    try:
        if args.out is None:
            _write(sys.stdout.buffer, lines)
        else:
            with WholeOrNothing(args.out) as out:  # a dump cut short leaves --out as it was
                _write(out.stream, lines)
                all_done(out)
    except BrokenPipeError:
        raise  # the reader went away (`| head`): not an error (ops/cli.py)
    except OSError as error:
        target = args.out or "the standard output"
        print(f"dripstream topics dump: cannot write {target}: {error.strerror}", file=sys.stderr)
        return 2
    print(
        f"dumped {len(lines)} record(s) from {', '.join(args.topics)}", file=sys.stderr, flush=True
    )
    if skipped:
        print(
            f"dripstream topics dump: left out {skipped} record(s) whose value is not a"
            " JSON object",
            file=sys.stderr,
        )
        return 1
    return 0


def _write(out: IO[bytes], lines: Sequence[bytes]) -> None:
    for line in lines:
        out.write(line + b"\n")
    out.flush()


async def _read(
    bootstrap: str, prefix: str, names: Sequence[str], optional: frozenset[str] = frozenset()
) -> list[DumpedRecord]:
    """Every committed record of the topics, from the beginning up to the ends they had
    when the read began (records written meanwhile are left for the next dump). A topic
    in `optional` that does not exist is passed over with a word on stderr."""
    from aiokafka import AIOKafkaConsumer, TopicPartition  # type: ignore[import-untyped]  # noqa: PLC0415

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        client_id="dripstream-topics-dump",
    )
    try:
        await consumer.start()
        # Every topic's metadata, asked without naming any, so none is auto-created (the
        # consumer's own metadata covers only the topics it reads; as streams/relay.py).
        cluster = await consumer._client.fetch_all_metadata()
        partitions: list[Any] = []
        for name in names:
            found = cluster.partitions_for_topic(prefix + name)
            if not found and name in optional:
                print(
                    f"dripstream topics dump: no topic {prefix + name}: passed over",
                    file=sys.stderr,
                )
                continue
            if not found:
                raise TopicsError(f"no topic {prefix + name} on {bootstrap}")
            partitions.extend(TopicPartition(prefix + name, p) for p in sorted(found))
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        # Under read_committed: the last stable offsets, so an open transaction is not awaited.
        ends: dict[Any, int] = await consumer.end_offsets(partitions)
        records: list[DumpedRecord] = []
        remaining = {tp for tp in partitions if await consumer.position(tp) < ends[tp]}
        progress_at = time.monotonic()
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=500)
            for tp, fetched in batch.items():
                topic = tp.topic[len(prefix) :]
                records.extend(
                    DumpedRecord(topic, tp.partition, r.offset, r.value)
                    for r in fetched
                    if r.offset < ends[tp]
                )
            done = {tp for tp in remaining if await consumer.position(tp) >= ends[tp]}
            if batch or done:
                progress_at = time.monotonic()
            elif time.monotonic() - progress_at > STALLED_AFTER:
                late = ", ".join(sorted(f"{tp.topic}:{tp.partition}" for tp in remaining))
                raise TopicsError(f"no progress for {STALLED_AFTER:.0f}s reading {late}")
            if done:
                consumer.pause(*done)
                remaining -= done
        return records
    finally:
        await consumer.stop()
