"""An engine rebuilt from what a worker's store recorded: the definitions in their versions'
order and the stored inputs and ticks of some partition groups, in the order they were
decided. It is how a worker takes partitions over (streams/worker.py) without snapshots."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import NamedTuple

from aggregates.duplicates import ReusedIdentityError
from aggregates.engine import DEFINITION_COMMANDS, Engine
from schemas.validation import decode_stored
from streams import snapshots
from streams.snapshots import Snapshot
from streams.store import EngineStore, in_definitions_order

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
    snapshot: Snapshot | None = None  # the one taken instead of replaying, if any


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
) -> Replayed:
    """A fresh engine from the stored inputs of the streams `names` (`topic:partition`, of
    the partition `groups`), or from the snapshot `key` when nothing was recorded for them
    after it (streams/snapshots.py). It may run in a thread: it reads only the store."""
    snapshot = snapshots.load(store, key, partition_of) if key is not None else None
    if snapshot is not None and next(store.replayable(names, snapshot.last_record), None) is None:
        return _from_snapshot(store, snapshot)
    engine = Engine(partition_of=partition_of, live=not event_clock)
    if event_clock:
        # As live: until every group held has been replayed up to a minute, its throttle
        # places and owner notices stay, for the groups replayed later.
        engine.expect_partitions(groups)
    pending = store.definitions_after(0)
    applied = 0
    replayed = 0
    spanned = False
    for item in in_definitions_order(store.replayable(names)):
        while pending and pending[0].version <= item.definitions:
            change = pending.pop(0)
            engine.adopt(
                change.document, change.deleted, change.applied_at, f"defs:{change.version}"
            )
            applied = change.version
            spanned = spanned or needs_one_worker(engine)
        if item.kind == "adopt":
            continue  # the change it marks was adopted just above
        if item.kind == "tick" and item.at is not None:
            engine.advance(item.at, partition=item.partition)
        elif item.event is not None:
            # What was decided is replayed as it was: an input stored before a check of
            # today refused its kind must not stop the rebuild.
            event = decode_stored(item.event)
            if event.type in DEFINITION_COMMANDS:
                # Its change is adopted above by version, where each group took it: decided
                # here, it would govern other groups' inputs decided before.
                engine.remember(event, item.at)
                replayed += 1
                continue
            try:
                if item.at is not None:  # decided by the wall clock
                    engine.handle(event, at=item.at)
                else:
                    engine.handle(event, partition=item.partition)
            except ReusedIdentityError:
                # Two engines (two processes, or one before and after a rebalance) each
                # decided an input under this id; now together, the second is refused here
                # as it would be live. What it decided was published.
                log.warning("stored input %s reuses an id decided before", event.identity)
            replayed += 1
    for change in pending:
        engine.adopt(change.document, change.deleted, change.applied_at, f"defs:{change.version}")
        applied = change.version
        spanned = spanned or needs_one_worker(engine)
    return Replayed(engine, applied, replayed, spanned)


def _from_snapshot(store: EngineStore, snapshot: Snapshot) -> Replayed:
    """The snapshot's engine, with the definitions changed since adopted as a rebuild
    adopts those after its last stored record."""
    engine = snapshot.engine
    applied, spanned = snapshot.applied, snapshot.spanned
    for change in store.definitions_after(applied):
        engine.adopt(change.document, change.deleted, change.applied_at, f"defs:{change.version}")
        applied = change.version
        spanned = spanned or needs_one_worker(engine)
    return Replayed(engine, applied, 0, spanned, snapshot)
