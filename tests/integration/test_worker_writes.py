"""The worker decides on while its batches are written (streams/worker.py): the writes go
one at a time in the order decided, what is decided meanwhile goes in the next one, and
nothing goes after a batch the store refused."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest
from aiokafka import TopicPartition  # type: ignore[import-untyped]

from streams.store import AlreadyRecorded, BatchRecord, InputRecord, OutboxRow
from streams.worker import EngineWorker, WorkerSettings

pytestmark = [pytest.mark.postgres]


@pytest.fixture
async def worker(database_url: str, pg_schema: str) -> AsyncIterator[EngineWorker]:
    # The consumer is never started: these tests only queue writes.
    made = EngineWorker(WorkerSettings("127.0.0.1:1", database_url, schema=pg_schema, relay=False))
    try:
        yield made
    finally:
        made.store.close()


class SlowStore:
    """Stands in for the store's write: holds each write until released, and keeps what
    happened in order."""

    def __init__(self, refuse_first: bool) -> None:
        self.refuse_first = refuse_first
        self.release = threading.Event()
        self.log: list[str] = []
        self.batches: list[BatchRecord] = []

    def write(self, batch: BatchRecord) -> None:
        name = batch.outbox[0].event_id
        self.log.append(f"start {name}")
        self.batches.append(batch)
        self.release.wait(60)
        if self.refuse_first and len(self.log) == 1:
            self.log.append(f"refused {name}")
            raise AlreadyRecorded(f"{name} was recorded elsewhere")
        self.log.append(f"end {name}")


async def decide(worker: EngineWorker, name: str) -> None:
    worker.record.outbox.append(OutboxRow(name, "decisions", None, b"{}"))
    await worker._submit()


async def being_written(store: SlowStore, name: str) -> None:
    while f"start {name}" not in store.log:
        await asyncio.sleep(0.01)


async def test_batches_are_written_one_at_a_time_in_the_order_decided(
    worker: EngineWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SlowStore(refuse_first=False)
    monkeypatch.setattr(worker.store, "write", store.write)

    # given two batches decided while the first is still being written
    await decide(worker, "a")
    await asyncio.wait_for(being_written(store, "a"), 60)
    await decide(worker, "b")
    await decide(worker, "c")

    # when the store lets them through
    store.release.set()
    await worker._drain()

    # then the next started only after the first was recorded, and what was decided
    # meanwhile went in together
    assert store.log == ["start a", "end a", "start b", "end b"]
    assert [row.event_id for row in store.batches[1].outbox] == ["b", "c"]


async def test_nothing_decided_after_a_refused_batch_is_written(
    worker: EngineWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SlowStore(refuse_first=True)
    monkeypatch.setattr(worker.store, "write", store.write)

    # given a batch being written and one decided behind it
    await decide(worker, "a")
    await asyncio.wait_for(being_written(store, "a"), 60)
    await decide(worker, "b")

    # when the store refuses the first (another worker recorded that group)
    store.release.set()
    await worker._drain()

    # then the worker knows it is stale and neither that batch nor a later one is written
    await decide(worker, "c")
    await worker._drain()
    assert worker.stale
    assert store.log == ["start a", "refused a"]


class CommitLog:
    """Stands in for the consumer's offset commits."""

    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, int]] = []

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))


async def test_offsets_are_committed_at_most_once_a_second_and_at_once_on_drain(
    worker: EngineWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = CommitLog()
    monkeypatch.setattr(worker, "consumer", log)
    monkeypatch.setattr("streams.worker.COMMIT_EVERY", 30.0)
    tp = TopicPartition("t.contacts", 0)
    store = SlowStore(refuse_first=False)
    store.release.set()
    monkeypatch.setattr(worker.store, "write", store.write)
    for offset in range(3):
        worker.commits[tp] = offset
        await decide(worker, f"e{offset}")
        while worker.writer is not None and not worker.writer.done():
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    # The first write's offsets went at once; the later ones wait for the pause to end.
    assert log.commits == [{tp: 0}]
    assert worker.offsets == {tp: 2}
    await asyncio.wait_for(worker._drain(), 5)
    assert log.commits == [{tp: 0}, {tp: 2}]
    assert worker.offsets == {}


def test_a_rebuild_over_two_inputs_that_reuse_an_id_goes_on(worker: EngineWorker) -> None:
    # given two inputs under one id with different contents, each accepted by another
    # engine (two processes, or one before and after a rebalance), on two partitions
    def tagged(contact: str, time: str) -> bytes:
        return (
            b'{"specversion":"1.0","id":"x","source":"crm","type":"contact.tag_added",'
            b'"time":"' + time.encode() + b'","subject":"' + contact.encode() + b'",'
            b'"data":{"contact_id":"' + contact.encode() + b'","tag":"hot"}}'
        )

    first = InputRecord("p.contacts", 0, 0, None, 0, tagged("a", "2027-07-06T10:00:00Z"))
    second = InputRecord("p.contacts", 1, 0, None, 0, tagged("b", "2027-07-06T11:00:00Z"))
    worker.store.write(BatchRecord(stored=[first.stored(), second.stored()]))
    # when one engine is rebuilt over both partitions
    engine, _, replayed = worker._replay_store(["p.contacts:0", "p.contacts:1"])
    # then the rebuild goes on (the second is refused as it would be live), not crashes
    assert replayed == 2
    assert engine.now is not None
