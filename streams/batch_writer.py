"""The worker's writes: one batch at a time, in the order decided, while the engine decides
on; then the batch's offsets to Kafka.

What is decided while a write runs gathers into the next batch (a transaction costs round
trips whatever its size, so under load the batches grow instead of queueing up). A batch
the store refuses (another worker recorded one of its groups) makes the worker stale:
nothing decided after it is written, and the worker rebuilds from the store. A write cut
off by a lost PostgreSQL is in doubt: the batch, with what was decided behind it, waits to
be written again once PostgreSQL answers (`write_again`). Written again, it either goes in
(the cut-off transaction was rolled back: the usual case) or is refused (it had committed,
or another worker wrote meanwhile: its inputs' rows, its ticks' and its groups' trackings
are there already), and the worker rebuilds as after any refusal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiokafka.errors import (  # type: ignore[import-untyped]
    CommitFailedError,
    IllegalStateError,
)
from prometheus_client import Histogram

from streams.outages import BROKER_LOST, DATABASE_LOST, one_line
from streams.store import AlreadyRecorded, BatchRecord

log = logging.getLogger("dripstream.worker")

# Kafka's committed offsets only show the group's progress (the store's positions decide where
# a worker resumes), so they go at most once a COMMIT_EVERY seconds, not after every write.
COMMIT_EVERY = 1.0

# A topic partition (aiokafka's TopicPartition) -> the next offset to read.
Offsets = dict[Any, int]


class Store(Protocol):
    def write(self, batch: BatchRecord) -> int | None: ...


class BatchWriter:
    """`stale` tells whether the worker's state is already known to be stale (nothing more
    is written then); `refused` is called when the store refuses a batch (the worker must
    rebuild), `lost` when PostgreSQL went away during a write (the write is in doubt until
    `write_again`; a batch that cannot be written again safely is refused instead).
    `commit` commits offsets to Kafka; `gather_at_most` is how many stored rows may wait
    behind a write before the engine waits for it."""

    def __init__(
        self,
        store: Store,
        commit: Callable[[Offsets], Awaitable[None]],
        write_seconds: Histogram,
        *,
        stale: Callable[[], bool],
        refused: Callable[[], None],
        lost: Callable[[], None],
        gather_at_most: int,
    ) -> None:
        self._store = store
        self._commit = commit
        self._write_seconds = write_seconds
        self._stale = stale
        self._refused = refused
        self._lost = lost
        self._gather_at_most = gather_at_most
        # The notification id of the last input or tick written (or read by the rebuild
        # this worker's state comes from): a snapshot of that state covers the store up to it.
        self.last_record = 0
        # The write under way, and what was decided since, waiting to be written next.
        self.writer: asyncio.Task[None] | None = None
        self.pending = BatchRecord()
        self.pending_commits: Offsets = {}
        self.offsets: Offsets = {}  # recorded, to commit to Kafka
        self.committing: asyncio.Task[None] | None = None
        self.commit_now = asyncio.Event()  # set while `drain` waits for the commits
        # A write was cut off by a lost PostgreSQL: `pending` starts with its batch, and
        # nothing is written until `write_again`.
        self.in_doubt = False

    async def submit(self, record: BatchRecord, commits: Offsets, *, wait: bool = False) -> None:
        """Hand a decided batch to the writer and go on deciding; the engine waits only when
        the batch gathering behind a write holds `gather_at_most` stored rows. With `wait`,
        until everything is recorded."""
        self.raise_if_failed()
        if not self._stale() and (record or commits):
            self.pending.extend(record)
            self.pending_commits.update(commits)
            if not self.in_doubt and (self.writer is None or self.writer.done()):
                self.writer = asyncio.create_task(self._write_pending())
        while wait or len(self.pending.stored) >= self._gather_at_most:
            if self.writer is None or self.writer.done():
                break
            await self.writer
        self.raise_if_failed()

    def raise_if_failed(self) -> None:
        """A write that failed other than by a refusal stops the worker, loudly."""
        writer = self.writer
        if writer is not None and writer.done() and writer.exception() is not None:
            writer.result()

    def drop_pending(self) -> None:
        """What was decided but not yet being written: a rebuild decides it again from the
        stored positions."""
        self.pending, self.pending_commits = BatchRecord(), {}
        self.in_doubt = False

    def write_again(self) -> None:
        """PostgreSQL answers again (on a new connection pool): write the batch in doubt,
        and what was decided behind it, as one. `submit`, `drain` and `raise_if_failed`
        then say how it went."""
        if self.in_doubt and (self.writer is None or self.writer.done()):
            self.in_doubt = False
            self.writer = asyncio.create_task(self._write_pending())

    async def drain(self) -> None:
        """Wait until everything handed to the writer is recorded (or dropped), and its
        offsets committed to Kafka."""
        while self.writer is not None and not self.writer.done():
            await asyncio.shield(self.writer)
        self.raise_if_failed()
        if self.committing is not None:
            self.commit_now.set()
            try:
                await asyncio.shield(self.committing)
            finally:
                self.commit_now.clear()

    async def _write_pending(self) -> None:
        """Write the pending batch, then the one gathered meanwhile, until none is left."""
        while self.pending and not self._stale():
            record, commits = self.pending, self.pending_commits
            self.drop_pending()
            started = time.perf_counter()
            try:
                written = await asyncio.to_thread(self._store.write, record)
            except AlreadyRecorded:
                # Another worker recorded one of these groups first (a rebalance fenced
                # us): our in-memory state is stale, so start again from the store, and
                # write nothing decided after it.
                log.warning("a group was recorded elsewhere; rebuilding from the store")
                self._refused()
                self.drop_pending()
                return
            except DATABASE_LOST as error:
                if not self._keep_in_doubt(record, commits):
                    log.warning(
                        "PostgreSQL was lost during a write (%s); rebuilding from it",
                        one_line(error),
                    )
                    self._refused()
                    self.drop_pending()
                    return
                log.warning(
                    "PostgreSQL was lost during a write (%s); written again once it answers",
                    one_line(error),
                )
                self._lost()
                return
            self._write_seconds.observe(time.perf_counter() - started)
            if written is not None:
                self.last_record = max(self.last_record, written)
            if commits:
                # Kafka's offsets only show the group's progress (the store decides where
                # a worker resumes): committed beside the writes, not between them.
                self.offsets.update(commits)
                if self.committing is None or self.committing.done():
                    self.committing = asyncio.create_task(self._commit_offsets())

    def _keep_in_doubt(self, record: BatchRecord, commits: Offsets) -> bool:
        """Put the batch whose write was cut off back ahead of what was decided since;
        False when it cannot be written again safely: without rows of inputs or ticks, or a
        group's tracking (whose fence refuses it moved once), a batch that did commit would
        not be refused the second time. A batch of records passed over (the engine's own
        contact changes read back, dead letters) moves the trackings alone."""
        if not (record.stored or record.trackings):
            return False
        try:
            record.extend(self.pending)
        except ValueError:
            return False  # two definition changes: one transaction holds one
        self.pending = record
        self.pending_commits = {**commits, **self.pending_commits}
        self.in_doubt = True
        return True

    async def _commit_offsets(self) -> None:
        """Commit what was recorded, then what was recorded meanwhile, at most once a
        COMMIT_EVERY seconds (without the pause while `drain` waits for it)."""
        while self.offsets:
            offsets, self.offsets = self.offsets, {}
            try:
                await self._commit(offsets)
            except (CommitFailedError, IllegalStateError):
                # A rebalance took the partitions meanwhile; what was decided is in the
                # store, and the next owner starts from there.
                log.warning("offset commit refused by a rebalance; the store has it")
            except BROKER_LOST as error:
                # The store has the positions; Kafka's only show progress: kept for the
                # next commit, behind any later ones.
                log.warning("offset commit failed (%s); the store has the positions", error)
                self.offsets = {**offsets, **self.offsets}
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.commit_now.wait(), COMMIT_EVERY)
