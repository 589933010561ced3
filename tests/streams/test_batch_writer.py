"""The worker decides on while its batches are written (streams/batch_writer.py): the writes
go one at a time in the order decided, what is decided meanwhile goes in the next one,
nothing goes after a batch the store refused, and offsets are committed after the writes."""

from __future__ import annotations

import asyncio
import threading

import psycopg
import pytest
from aiokafka import TopicPartition  # type: ignore[import-untyped]
from eventsourcing.persistence import StoredEvent
from prometheus_client import CollectorRegistry, Histogram

from streams.batch_writer import BatchWriter, Offsets
from streams.store import AlreadyRecorded, BatchRecord, GroupProgress, OutboxRow


class SlowStore:
    """Stands in for the store's write: holds each write until released, and keeps what
    happened in order."""

    def __init__(self, refuse_first: bool = False) -> None:
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


class Worker:
    """What the writer needs of the worker: its stale flag, and the consumer's commits."""

    def __init__(self, store: SlowStore) -> None:
        self.stale = False
        self.lost = 0  # writes cut off by a lost PostgreSQL, in doubt
        self.commits: list[Offsets] = []
        seconds = Histogram("write_seconds", "", registry=CollectorRegistry())
        self.writes = BatchWriter(
            store,
            self.commit,
            seconds,
            stale=lambda: self.stale,
            refused=self.refuse,
            lost=self.note_lost,
            gather_at_most=1000,
        )

    def refuse(self) -> None:
        self.stale = True

    def note_lost(self) -> None:
        self.lost += 1

    async def commit(self, offsets: Offsets) -> None:
        self.commits.append(dict(offsets))

    async def decide(self, name: str, offsets: Offsets | None = None) -> None:
        record = BatchRecord(outbox=[OutboxRow(name, "decisions", None, b"{}")])
        await self.writes.submit(record, offsets or {})


async def being_written(store: SlowStore, name: str) -> None:
    while f"start {name}" not in store.log:
        await asyncio.sleep(0.01)


async def test_batches_are_written_one_at_a_time_in_the_order_decided() -> None:
    store = SlowStore()
    worker = Worker(store)

    # given two batches decided while the first is still being written
    await worker.decide("a")
    await asyncio.wait_for(being_written(store, "a"), 60)
    await worker.decide("b")
    await worker.decide("c")

    # when the store lets them through
    store.release.set()
    await worker.writes.drain()

    # then the next started only after the first was recorded, and what was decided
    # meanwhile went in together
    assert store.log == ["start a", "end a", "start b", "end b"]
    assert [row.event_id for row in store.batches[1].outbox] == ["b", "c"]


async def test_nothing_decided_after_a_refused_batch_is_written() -> None:
    store = SlowStore(refuse_first=True)
    worker = Worker(store)

    # given a batch being written and one decided behind it
    await worker.decide("a")
    await asyncio.wait_for(being_written(store, "a"), 60)
    await worker.decide("b")

    # when the store refuses the first (another worker recorded that group)
    store.release.set()
    await worker.writes.drain()

    # then the worker knows it is stale and neither that batch nor a later one is written
    await worker.decide("c")
    await worker.writes.drain()
    assert worker.stale
    assert store.log == ["start a", "refused a"]


async def test_offsets_are_committed_at_most_once_a_second_and_at_once_on_drain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("streams.batch_writer.COMMIT_EVERY", 30.0)
    store = SlowStore()
    store.release.set()
    worker = Worker(store)
    tp = TopicPartition("t.contacts", 0)
    for offset in range(3):
        await worker.decide(f"e{offset}", {tp: offset})
        while worker.writes.writer is not None and not worker.writes.writer.done():
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    # The first write's offsets went at once; the later ones wait for the pause to end.
    assert worker.commits == [{tp: 0}]
    assert worker.writes.offsets == {tp: 2}
    await asyncio.wait_for(worker.writes.drain(), 5)
    assert worker.commits == [{tp: 0}, {tp: 2}]
    assert worker.writes.offsets == {}


async def test_a_write_that_fails_otherwise_stops_the_worker() -> None:
    class BrokenStore(SlowStore):
        def write(self, batch: BatchRecord) -> None:
            raise OSError("connection lost")

    worker = Worker(BrokenStore())
    await worker.decide("a")
    with pytest.raises(OSError, match="connection lost"):
        await worker.writes.drain()


class CutOffStore(SlowStore):
    """A store whose connection is cut off during the first write (rolled back), then
    answers; with `committed`, that first write had committed, so writing it again is
    refused (its rows are there)."""

    def __init__(self, committed: bool = False) -> None:
        super().__init__()
        self.release.set()
        self.committed = committed

    def write(self, batch: BatchRecord) -> None:
        names = [row.event_id for row in batch.outbox]
        self.batches.append(batch)
        if len(self.batches) == 1:
            self.log.append(f"cut off {names}")
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        if self.committed:
            self.log.append(f"refused {names}")
            raise AlreadyRecorded("duplicate key value violates unique constraint")
        self.log.append(f"wrote {names}")


def stored(name: str) -> BatchRecord:
    row = StoredEvent(f"in:t.contacts:0:{name}", 1, "input:t.contacts:0", b"{}")
    return BatchRecord(stored=[row], outbox=[OutboxRow(name, "decisions", None, b"{}")])


async def until_written(worker: Worker) -> None:
    writer = worker.writes.writer
    while writer is not None and not writer.done():
        await asyncio.sleep(0.01)


async def test_a_write_cut_off_by_a_lost_database_is_written_again_with_what_followed() -> None:
    store = CutOffStore()
    worker = Worker(store)
    tp = TopicPartition("t.contacts", 0)
    # given a batch whose write PostgreSQL cut off
    await worker.writes.submit(stored("a"), {tp: 1})
    await until_written(worker)
    assert worker.writes.in_doubt
    assert worker.lost == 1
    # when more is decided meanwhile, then nothing is written while it is in doubt
    await worker.writes.submit(stored("b"), {tp: 2})
    await until_written(worker)
    assert store.log == ["cut off ['a']"]
    # and once PostgreSQL answers, the cut-off batch and the later one go in as one, in order
    worker.writes.write_again()
    await worker.writes.drain()
    assert store.log == ["cut off ['a']", "wrote ['a', 'b']"]
    assert not worker.writes.in_doubt
    assert not worker.stale
    assert worker.commits == [{tp: 2}]


async def test_a_cut_off_write_that_had_committed_is_refused_and_the_worker_rebuilds() -> None:
    store = CutOffStore(committed=True)
    worker = Worker(store)
    await worker.writes.submit(stored("a"), {})
    await until_written(worker)
    worker.writes.write_again()
    await worker.writes.drain()
    assert store.log == ["cut off ['a']", "refused ['a']"]
    assert worker.stale
    assert not worker.writes.in_doubt


async def test_a_cut_off_write_without_stored_rows_is_not_written_again() -> None:
    # Nothing of it would make a second write of a batch that had committed fail.
    store = CutOffStore()
    worker = Worker(store)
    await worker.decide("a")  # decisions only, no input or tick rows
    await until_written(worker)
    assert worker.stale
    assert not worker.writes.in_doubt
    assert store.log == ["cut off ['a']"]


async def test_a_cut_off_write_that_moves_a_tracking_alone_is_written_again() -> None:
    # Records passed over (the engine's own contact changes read back) move a group's
    # tracking and nothing else: had it committed, the tracking's fence would refuse it.
    store = CutOffStore()
    worker = Worker(store)
    tp = TopicPartition("t.contacts", 0)
    passed_over = BatchRecord(
        trackings={0: GroupProgress(0, 3)}, outbox=[OutboxRow("a", "dlq", None, b"{}")]
    )
    await worker.writes.submit(passed_over, {tp: 3})
    await until_written(worker)
    assert worker.writes.in_doubt
    assert not worker.stale
    worker.writes.write_again()
    await worker.writes.drain()
    assert store.log == ["cut off ['a']", "wrote ['a']"]
    assert worker.commits == [{tp: 3}]
