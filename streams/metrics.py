"""Prometheus metrics of the engine worker, in a registry of its own."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


@dataclass(frozen=True, slots=True)
class PartitionProgress:
    """How far one assigned partition is read, as the consumer knows it."""

    highwater: int | None  # the next offset the broker will write
    last_stable: int | None  # read_committed: the first offset of an open transaction
    position: int | None  # the next offset the consumer will return


def consumer_lag(partitions: Iterable[PartitionProgress], held: int = 0) -> int:
    """Records on the assigned partitions not yet consumed and decided.

    Counted from the consumer's position, not from the stored position of the last record
    decided: the input topics also hold records that are read and never decided (the
    producer's `stream.watermark`, dead letters' originals, the markers that end the relay's
    transactions), and counting from the stored position took them for lag for ever. Under
    read_committed the consumer can read up to the last stable offset only; past it is an
    open transaction, not yet readable. `held` adds the records read and still waiting in
    the buffers for their turn (the event-time merge), which are not decided yet either.
    """
    lag = held
    for progress in partitions:
        end = progress.highwater
        if progress.last_stable is not None and progress.last_stable >= 0:
            end = progress.last_stable if end is None else min(end, progress.last_stable)
        if end is None or progress.position is None:
            continue  # nothing fetched yet: unknown, not zero and not the whole partition
        lag += max(0, end - progress.position)
    return lag


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_in = Counter(
            "dripstream_events_in",
            "Input records taken: decided, dead-lettered, or skipped as the engine's own",
            registry=r,
        )
        self.events_out = Counter("dripstream_events_out", "Decisions recorded", registry=r)
        self.redelivered = Counter(
            "dripstream_redelivered", "Records at or below the stored position", registry=r
        )
        self.dead_letters = Counter(
            "dripstream_dead_letters", "Records sent to the dead-letter topic", registry=r
        )
        self.timers_fired = Counter(
            "dripstream_timers_fired",
            "Timers that came up live: a step run, skipped or deferred, a minute's owner notices",
            registry=r,
        )
        self.rebuilds = Counter("dripstream_rebuilds", "Engine rebuilds from the store", registry=r)
        self.snapshots_taken = Counter(
            "dripstream_snapshots_taken",
            "Rebuilds that took the engine's snapshot of a clean stop instead of replaying",
            registry=r,
        )
        self.writes_again = Counter(
            "dripstream_writes_again",
            "Writes cut off by a lost PostgreSQL and written again once it answered, with no"
            " rebuild",
            registry=r,
        )
        self.rebuilding = Gauge(
            "dripstream_rebuilding",
            "1 while the engine is rebuilt from the store: nothing is decided, and the other"
            " gauges keep their last values",
            registry=r,
        )
        self.groups_held = Gauge(
            "dripstream_partition_groups_held",
            "Partition groups this worker holds (0: it stands by, or has none yet)",
            registry=r,
        )
        self.one_worker = Gauge(
            "dripstream_one_worker",
            "1 once the definitions need one worker holding every partition (a sequence with"
            " a throttle or owner changes, now or before)",
            registry=r,
        )
        self.published = Counter(
            "dripstream_published", "Outbox rows published to Kafka", registry=r
        )
        self.timers_pending = Gauge(
            "dripstream_timers_pending",
            "Timers waiting in the engine (steps of active enrollments, owner-notice minutes)",
            registry=r,
        )
        self.timers_due = Gauge(
            "dripstream_timers_due",
            "Steps whose moment has come (by the worker's clock) and that have not run yet",
            registry=r,
        )
        self.active_enrollments = Gauge(
            "dripstream_active_enrollments", "Active enrollments", registry=r
        )
        self.repeated_inputs = Gauge(
            "dripstream_repeated_inputs",
            "Inputs skipped as repeats (same source and id) by the engine since it was built",
            registry=r,
        )
        self.lag = Gauge(
            "dripstream_consumer_lag",
            "Records on the assigned partitions not yet consumed and decided",
            registry=r,
        )
        self.batch_seconds = Histogram(
            "dripstream_batch_seconds",
            "Time to decide and record one batch",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=r,
        )
        self.write_seconds = Histogram(
            "dripstream_write_seconds",
            "Time to record one batch in PostgreSQL (while the next one is decided)",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=r,
        )

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        start_http_server(port, addr=host, registry=self.registry)
