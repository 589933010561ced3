"""One input record of the worker decided into the batch being built (streams/worker.py).

What the engine decides goes to the batch's stored inputs and outbox; what it cannot take
(an undecodable record, a reused id, a bug the input meets) goes to the outbox as a dead
letter, so nothing is dropped without a word. A sequence command is also kept as the
definition change the other workers adopt.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import Enum

from aggregates.duplicates import ReusedIdentityError
from aggregates.engine import DEFINITION_COMMANDS, Engine
from aggregates.timer_queue import alone
from schemas.envelope import ENGINE_SOURCE, CloudEvent
from schemas.registry import topic_for
from streams import routing
from streams.metrics import WorkerMetrics
from streams.ordering import Pending
from streams.store import BatchRecord, Definition, InputRecord, outbox_rows

log = logging.getLogger("dripstream.worker")


class Decided(Enum):
    INPUT = "input"  # decided, dead-lettered, passed on or passed over: go on
    DEFINITION_CHANGE = "definition_change"  # recorded alone, for the others to adopt
    ENGINE_FAILED = "engine_failed"  # the engine may be half changed: rebuild it


@dataclass(frozen=True, slots=True)
class DecidingContext:
    """What deciding a record needs of the worker, as it stands for this record."""

    engine: Engine
    metrics: WorkerMetrics
    partition_count: int
    partition_of: Callable[[str], int]
    definitions_version: int
    clock: Callable[[], datetime] | None  # None under the event clock


def decide_record(item: Pending, record: BatchRecord, context: DecidingContext) -> Decided:
    """Decide one record into `record`."""
    event = item.event
    if event is None:
        context.metrics.dead_letters.inc()
        record.outbox.append(routing.dead_letter(item))
        return Decided.INPUT
    if event.source == ENGINE_SOURCE:
        return Decided.INPUT  # the engine's own change, applied when it was decided
    if routing.fans_out(event):
        record.outbox.extend(routing.fan_out(event, context.partition_count, context.partition_of))
        return Decided.INPUT
    if event.type == "lead.email_received":
        destination = routing.lead_destination(event)
        if destination is not None and context.partition_of(destination) != item.partition:
            record.outbox.append(routing.rerouted_lead(event, destination))
            return Decided.INPUT
    engine = context.engine
    at: datetime | None = None
    repeats = engine.duplicates
    try:
        if context.clock is None:
            outputs = engine.handle(event, partition=item.partition)
        else:
            at = context.clock()
            # Only its own partition's timers before it: a rebuild that holds more
            # partitions than this worker does replays it alike (streams/store.py).
            outputs = engine.handle(event, at=at, partition=alone(item.partition))
    except ReusedIdentityError as reused:
        # Refused before anything was decided, and not stored: a rebuild never sees it.
        context.metrics.dead_letters.inc()
        rejected = replace(item, event=None, rejection=(reused.field, reused.reason))
        record.outbox.append(routing.dead_letter(rejected))
        return Decided.INPUT
    except Exception as error:
        # A bug one input meets must not stop its partitions for good (a restart would
        # meet it again, for ever): it is dead-lettered, not stored, and the engine is
        # rebuilt without it.
        log.exception(
            "the engine failed on %s:%d@%d; dead-lettered, rebuilding",
            item.topic,
            item.partition,
            item.offset,
        )
        context.metrics.dead_letters.inc()
        failure = f"the engine failed on it: {type(error).__name__}: {error}"[:500]
        rejected = replace(item, event=None, rejection=("engine", failure))
        record.outbox.append(routing.dead_letter(rejected))
        return Decided.ENGINE_FAILED
    record.stored.append(
        InputRecord(
            item.topic, item.partition, item.offset, at, context.definitions_version, item.raw
        ).stored()
    )
    record.outbox.extend(outbox_rows(outputs, topic_for))
    context.metrics.events_out.inc(len(outputs))
    if event.type in DEFINITION_COMMANDS and engine.duplicates == repeats:
        # (a repeat changed nothing: no change for the other workers to adopt)
        record.definition = definition_change(engine, event, at or event.time)
        return Decided.DEFINITION_CHANGE
    return Decided.INPUT


def definition_change(engine: Engine, event: CloudEvent, now: datetime) -> Definition:
    """The change a sequence command made at `now` (when this engine decided it), as the
    other workers must adopt it: at that moment too, so their decisions carry the same time
    and a new sequence the same `created`."""
    data = event.data
    if event.type == "sequence.applied":
        return dict(data), [], now, event.occurrence
    if event.type == "sequence.delete_requested":
        return {"sequences": []}, [str(data["sequence_id"])], now, event.occurrence
    copy = engine.raw_definition(str(data["new_id"]))
    return {"sequences": [copy] if copy else []}, [], now, event.occurrence
