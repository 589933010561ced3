"""The outbox relay (streams/relay.py) on a real broker and PostgreSQL: every row once, in
order, on its key's partition; woken by the commit, not its poll; gone with its worker."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer  # type: ignore[import-untyped]
from aiokafka.partitioner import DefaultPartitioner  # type: ignore[import-untyped]

from streams.relay import Relay, RelaySettings
from streams.store import BatchRecord, EngineStore, OutboxRow

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(database_url: str, pg_schema: str) -> Iterator[EngineStore]:
    opened = EngineStore(database_url, pg_schema)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def settings(
    kafka_bootstrap: str, pipeline_prefix: str, database_url: str, pg_schema: str
) -> RelaySettings:
    """A relay on this test's topics and schema."""
    return RelaySettings(kafka_bootstrap, database_url, pipeline_prefix, pg_schema)


def rows(first: int, count: int) -> list[OutboxRow]:
    """Decisions of ten contacts over two topics, and a keyless one now and then."""
    made = []
    for n in range(first, first + count):
        key = None if n % 7 == 3 else f"c-{n % 10}"
        topic = "effects" if n % 3 == 0 else "decisions"
        made.append(OutboxRow(f"e-{n}", topic, key, f'{{"n": {n}}}'.encode()))
    return made


def read_back(
    bootstrap: str,
    prefix: str,
    expect: int,
    wait: float = 60,
    headers: dict[bytes, Any] | None = None,
) -> list[tuple[str, int, Any, bytes]]:
    """(topic, partition, key, value) of the committed records, in each partition's order,
    read until `expect` came or `wait` seconds passed; each one's headers into `headers`,
    by value, when given."""

    async def read() -> list[tuple[str, int, Any, bytes]]:
        consumer = AIOKafkaConsumer(
            prefix + "decisions",
            prefix + "effects",
            prefix + "dlq",
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            enable_auto_commit=False,
            group_id=None,
        )
        await consumer.start()
        found: list[tuple[str, int, Any, bytes]] = []
        try:
            deadline = time.monotonic() + wait
            while len(found) < expect and time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=500)
                for tp, records in batch.items():
                    found.extend((tp.topic, tp.partition, r.key, r.value) for r in records)
                    if headers is not None:
                        headers.update((r.value, list(r.headers)) for r in records)
        finally:
            await consumer.stop()
        return found

    return asyncio.run(read())


async def relay_until(relay: Relay, published: int, stopping: asyncio.Event) -> None:
    while relay.published < published:
        await asyncio.sleep(0.05)
    stopping.set()


def test_every_row_is_published_once_in_order_on_the_partition_of_its_key(
    settings: RelaySettings, store: EngineStore
) -> None:
    kafka_bootstrap, prefix = settings.bootstrap_servers, settings.prefix
    written = rows(0, 40) + rows(40, 25)
    store.write(BatchRecord(outbox=written[:40]))
    store.write(BatchRecord(outbox=written[40:]))
    relay = Relay(replace(settings, batch=30))

    async def run() -> None:
        stopping = asyncio.Event()
        await asyncio.gather(relay.run(stopping), relay_until(relay, len(written), stopping))

    asyncio.run(run())
    got = read_back(kafka_bootstrap, prefix, len(written))

    by_id = {row.value: row for row in written}
    assert sorted(value for *_, value in got) == sorted(by_id)  # each row exactly once
    partitions = list(range(6))
    for topic, partition, key, value in got:
        row = by_id[value]
        assert topic == prefix + row.topic
        if row.key is not None:
            assert key == row.key.encode()
            assert partition == DefaultPartitioner()(key, partitions, partitions)
    for topic in {topic for topic, *_ in got}:
        for partition in partitions:
            seen = [value for t, p, _, value in got if (t, p) == (topic, partition)]
            assert seen == [v for v in by_id if v in seen]  # the order they were decided in


def test_events_go_out_marked_structured_and_dead_letters_as_plain_json(
    settings: RelaySettings, store: EngineStore
) -> None:
    # By the CloudEvents Kafka binding, a record with no content type is read as binary
    # mode (the value a bare `data`) by a binding-following consumer.
    store.write(
        BatchRecord(
            outbox=[
                OutboxRow("e-1", "decisions", "c-1", b'{"specversion": "1.0"}'),
                OutboxRow("dlq:1", "dlq", "c-1", b'{"topic": "contacts"}'),
            ]
        )
    )
    relay = Relay(settings)

    async def run() -> None:
        stopping = asyncio.Event()
        await asyncio.gather(relay.run(stopping), relay_until(relay, 2, stopping))

    asyncio.run(run())
    headers: dict[bytes, Any] = {}
    read_back(settings.bootstrap_servers, settings.prefix, 2, headers=headers)
    assert headers == {
        b'{"specversion": "1.0"}': [("content-type", b"application/cloudevents+json")],
        b'{"topic": "contacts"}': [("content-type", b"application/json")],
    }


def test_the_relay_wakes_when_rows_are_committed_not_when_its_poll_comes_round(
    settings: RelaySettings, store: EngineStore
) -> None:
    kafka_bootstrap, prefix = settings.bootstrap_servers, settings.prefix
    # A poll an hour apart: only the commit's notification can wake it in this test.
    relay = Relay(replace(settings, poll_seconds=3600))

    async def run() -> None:
        stopping = asyncio.Event()
        running = asyncio.create_task(relay.run(stopping))
        # given a relay that published what there was and now waits
        await asyncio.to_thread(store.write, BatchRecord(outbox=rows(0, 5)))
        await asyncio.wait_for(relay_until_idle(relay, 5), 60)

        # when more rows are committed
        await asyncio.to_thread(store.write, BatchRecord(outbox=rows(5, 5)))

        # then it publishes them
        await asyncio.wait_for(relay_until(relay, 10, stopping), 60)
        await running

    asyncio.run(run())
    assert len(read_back(kafka_bootstrap, prefix, 10)) == 10


async def relay_until_idle(relay: Relay, published: int) -> None:
    while relay.published < published or not relay.idle.is_set():
        await asyncio.sleep(0.05)


def test_a_relay_process_stops_when_the_worker_that_started_it_is_killed(
    settings: RelaySettings, store: EngineStore
) -> None:
    kafka_bootstrap, prefix = settings.bootstrap_servers, settings.prefix
    store.write(BatchRecord(outbox=rows(0, 3)))
    # given a worker stand-in that started a relay process, which is publishing
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
                import time
                from streams.relay import RelaySettings, start_relay_process
                process = start_relay_process({settings!r})
                print(process.pid, flush=True)
                time.sleep(600)
            """),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert len(read_back(kafka_bootstrap, prefix, 3)) == 3

        # when the parent is killed outright
        parent.send_signal(signal.SIGKILL)
        parent.wait()

        # then the relay process ends too, releasing its lock for the next one
        assert _ends(child), f"relay process {child} outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()


def _ends(pid: int) -> bool:
    for _ in range(1200):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            return True
        if "\nState:\tZ" in status:  # ended, not yet reaped by whoever adopted it
            return True
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    return False


def test_rows_committed_while_the_relay_reads_ahead_do_not_wait_for_its_poll(
    settings: RelaySettings, store: EngineStore
) -> None:
    kafka_bootstrap, prefix = settings.bootstrap_servers, settings.prefix

    class CommitDuringReadAhead(Relay):
        """Rows are committed just after it read ahead (while a transaction commits)."""

        injected = False

        async def _fetch(self, conn: Any, position: int) -> list[tuple[int, OutboxRow]]:
            found = await super()._fetch(conn, position)
            if position > 0 and not self.injected:
                self.injected = True
                await asyncio.to_thread(store.write, BatchRecord(outbox=rows(3, 3)))
                while not self.wake.is_set():  # its notification has come
                    await asyncio.sleep(0.01)
            return found

    # Only notifications can wake this relay: a wake-up it forgets leaves rows behind.
    relay = CommitDuringReadAhead(replace(settings, poll_seconds=3600))

    async def run() -> None:
        stopping = asyncio.Event()
        running = asyncio.create_task(relay.run(stopping))
        await asyncio.to_thread(store.write, BatchRecord(outbox=rows(0, 3)))
        await asyncio.wait_for(relay_until(relay, 6, stopping), 60)
        await running

    asyncio.run(run())
    assert relay.injected
    assert len(read_back(kafka_bootstrap, prefix, 6)) == 6


def test_a_row_too_large_for_a_record_goes_out_as_a_dead_letter_and_the_rest_follow(
    settings: RelaySettings, store: EngineStore
) -> None:
    # Given a row over a Kafka record's size (an input's 600 KB name put into a text twice)
    # between others of the same partition: the relay used to stop at it at every start,
    # holding back everything decided after it
    kafka_bootstrap, prefix = settings.bootstrap_servers, settings.prefix
    huge = OutboxRow("e-huge", "decisions", "c-1", b'"' + b"x" * 1_200_000 + b'"')
    store.write(BatchRecord(outbox=[*rows(0, 3), huge, *rows(3, 3)]))
    dead_lettered: list[int] = []
    relay = Relay(settings, on_dead_lettered=dead_lettered.append)
    # when the relay publishes

    async def run() -> None:
        stopping = asyncio.Event()
        await asyncio.wait_for(
            asyncio.gather(relay.run(stopping), relay_until(relay, 7, stopping)), timeout=60
        )

    asyncio.run(run())
    got = read_back(kafka_bootstrap, prefix, expect=7)
    # then the six others go out, and in the big one's place a letter on `dlq`
    assert sorted(value for topic, _, _, value in got if not topic.endswith("dlq")) == sorted(
        row.value for row in [*rows(0, 3), *rows(3, 3)]
    )
    letters = [orjson.loads(value) for topic, _, _, value in got if topic.endswith("dlq")]
    assert len(letters) == 1
    letter = letters[0]
    assert (letter["topic"], letter["key"], letter["field"]) == (
        prefix + "decisions",
        "c-1",
        "event",
    )
    assert letter["reason"].startswith("an output of 1200005 bytes, more than a Kafka record")
    assert (letter["truncated"], letter["value_bytes"]) == (True, 1_200_002)
    assert letter["value_sha256"] == hashlib.sha256(huge.value).hexdigest()
    assert f"row {letter['offset']}" in letter["reason"]
    # and the letter is counted as the worker's dead letters are (its metric)
    assert dead_lettered == [1]
