"""An engine rebuilt from what a worker's store recorded: the definitions in their versions'
order and the stored inputs and ticks of some partition groups, in the order they were
decided. It is how a worker takes partitions over (streams/worker.py) without snapshots."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import NamedTuple

from aggregates.duplicates import ReusedIdentityError
from aggregates.engine import DEFINITION_COMMANDS, Engine
from schemas.validation import decode_stored
from streams import snapshots
from streams.snapshots import Snapshot
from streams.store import Definitions, EngineStore, Replayable, in_definitions_order

log = logging.getLogger("dripstream.worker")


def needs_one_worker(engine: Engine) -> bool:
    """Whether a sequence of the engine's definitions spans contacts (a throttle, owner
    changes), so needs one engine deciding every contact (streams/assignment.py)."""
    return any(sequence.spans_contacts for sequence in engine.sequences.values())


class Replayed(NamedTuple):
    """An engine rebuilt from the store, and what the rebuild saw on the way."""

    engine: Engine
    applied: int  # the definitions version in force at the end
    inputs: int  # stored inputs replayed
    spanned: bool  # a sequence spanned contacts in some definitions adopted on the way
    last_record: int  # the notification id of the last record its state covers (0: none)
    snapshot: Snapshot | None = None  # the one it started from, if any


class RebuildAbandonedError(Exception):
    """The rebuild was given up part way: what it was for is gone (a new assignment, or the
    worker stopping), so the rest of the store's records are not replayed."""


# Stored records replayed between looks at whether the rebuild is still wanted: a replay of
# a whole store takes minutes, and a worker's first assignment is often taken back within
# seconds, when the group's other members join.
ABANDON_CHECK_EVERY = 1000


def spanned_in_store(store: EngineStore) -> bool:
    """Whether a sequence spanned contacts in any definitions the store holds. A lost
    PostgreSQL raises (streams.outages.DATABASE_LOST) to the caller."""
    definitions = Engine()
    for change in store.definitions_after(0):
        definitions.adopt(change.document, change.deleted, change.applied_at, "startup")
        if needs_one_worker(definitions):
            return True
    return False


def replay_store(
    store: EngineStore,
    names: list[str],
    groups: frozenset[int],
    *,
    partition_of: Callable[[str], int],
    event_clock: bool,
    key: str | None = None,
    abandoned: Callable[[], bool] = lambda: False,
) -> Replayed:
    """A fresh engine from the stored inputs of the streams `names` (`topic:partition`, of
    the partition `groups`), in the order they were decided; or the snapshot `key`
    (streams/snapshots.py) with the records stored after it replayed on top, when they
    all come after its records in that order. It may run in a thread: it reads only the
    store. Raises RebuildAbandonedError once `abandoned` says so (asked now and then)."""
    snapshot = snapshots.find(store, key) if key is not None else None
    if snapshot is not None:
        later = list(store.replayable(names, snapshot.last_record))
        # A record decided under definitions older than the snapshot's goes, in a full
        # replay, before some of the snapshot's own (another worker adopting a change
        # late): the snapshot cannot stand for them then.
        if any(item.definitions < snapshot.applied for item in later):
            log.info("the engine's snapshot is passed over: records after it go before it")
        elif (kept := snapshots.engine_of(store, snapshot, partition_of)) is not None:
            pending = store.definitions_after(snapshot.applied)
            return _Rebuild(kept, pending, abandoned, snapshot).replay(later)
    engine = Engine(partition_of=partition_of, live=not event_clock)
    if event_clock:
        # As live: until every group held has been replayed up to a minute, its throttle
        # places and owner notices stay, for the groups replayed later.
        engine.expect_partitions(groups)
    rebuild = _Rebuild(engine, store.definitions_after(0), abandoned)
    return rebuild.replay(store.replayable(names))


class _Rebuild:
    """Records replayed into an engine (a fresh one, or the one a snapshot `start` kept),
    each definitions change adopted before the first record decided under it."""

    def __init__(
        self,
        engine: Engine,
        pending: list[Definitions],
        abandoned: Callable[[], bool],
        start: Snapshot | None = None,
    ) -> None:
        self.engine = engine
        self.pending = pending
        self.abandoned = abandoned
        self.start = start
        self.applied = start.applied if start else 0
        self.spanned = start.spanned if start else False
        self.last_record = start.last_record if start else 0
        self.replayed = 0

    def replay(self, items: Iterable[Replayable]) -> Replayed:
        for n, item in enumerate(in_definitions_order(items)):
            if n % ABANDON_CHECK_EVERY == 0 and self.abandoned():
                raise RebuildAbandonedError
            self._adopt(item.definitions)
            self.last_record = max(self.last_record, item.notification_id)
            if item.kind == "adopt":
                continue  # the change it marks was adopted just above
            if item.kind == "tick" and item.at is not None:
                self.engine.advance(item.at, partition=item.partition)
            elif item.event is not None:
                self._input(item)
        self._adopt(None)
        return Replayed(
            self.engine, self.applied, self.replayed, self.spanned, self.last_record, self.start
        )

    def _adopt(self, up_to: int | None) -> None:
        """The pending changes up to version `up_to` (None: all of them)."""
        pending, engine = self.pending, self.engine
        while pending and (up_to is None or pending[0].version <= up_to):
            change = pending.pop(0)
            engine.adopt(
                change.document, change.deleted, change.applied_at, f"defs:{change.version}"
            )
            self.applied = change.version
            self.spanned = self.spanned or needs_one_worker(engine)

    def _input(self, item: Replayable) -> None:
        assert item.event is not None
        # What was decided is replayed as it was: an input stored before a check of today
        # refused its kind must not stop the rebuild.
        event = decode_stored(item.event)
        self.replayed += 1
        if event.type in DEFINITION_COMMANDS:
            # Its change is adopted by version, where each group took it: decided here, it
            # would govern other groups' inputs decided before.
            self.engine.remember(event, item.at)
            return
        try:
            if item.at is not None:  # decided by the wall clock
                self.engine.handle(event, at=item.at, partition=item.partition)
            else:
                self.engine.handle(event, partition=item.partition)
        except ReusedIdentityError:
            # Two engines (two processes, or one before and after a rebalance) each decided
            # an input under this id; now together, the second is refused here as it would
            # be live. What it decided was published.
            log.warning("stored input %s reuses an id decided before", event.identity)
