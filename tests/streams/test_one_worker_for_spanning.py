"""A sequence spanning contacts (a throttle, owner changes) makes a worker ask the group for
one worker to hold every partition, for good; holding only some, it says so (README)."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition  # type: ignore[import-untyped]

from aggregates.engine import Engine
from aggregates.sequence import Catalog
from schemas.definitions import validate_definition_document
from streams.engine_rebuild import needs_one_worker
from streams.metrics import WorkerMetrics
from streams.store import BatchRecord
from streams.worker import EngineWorker
from tests.engine.helpers import ACCOUNT, sequence

THROTTLE = {"throttle_per_minute": 2}
ROUND_ROBIN = {
    "steps": [
        {"id": "rr", "type": "round_robin_owner", "owners": ["u-1"], "delay": {"kind": "none"}}
    ]
}
CHANGE_OWNER = {
    "steps": [{"id": "co", "type": "change_owner", "owner_id": "u-1", "delay": {"kind": "none"}}]
}
WARNING = (
    "this worker holds 3 of 6 partitions while its definitions need one worker (a sequence"
    " with a throttle or owner changes, now or before): until one worker holds them all,"
    " steps may run otherwise than published (README)"
)


def _engine(changes: dict[str, Any]) -> Engine:
    document = validate_definition_document(
        {"account": ACCOUNT, "sequences": [sequence(**changes)]}
    )
    return Engine(Catalog.from_document(document))


def _worker(changes: dict[str, Any], held: set[int]) -> EngineWorker:
    worker = object.__new__(EngineWorker)
    worker.metrics = WorkerMetrics()
    worker.engine = _engine(changes)
    worker.one_worker = False
    worker.rejoin_wanted = False
    worker.partition_count = 6
    worker.assigned = {TopicPartition("p.contacts", n) for n in held}
    return worker


@pytest.mark.parametrize(
    ("changes", "held", "rejoins"),
    [
        (THROTTLE, {0, 1, 2}, True),
        (ROUND_ROBIN, {0, 1, 2}, True),
        (CHANGE_OWNER, {0, 1, 2}, True),
        (THROTTLE, set(range(6)), False),  # keeps them all at the next join
        (THROTTLE, set(), False),  # the workers holding them ask
        ({}, {0, 1, 2}, False),
    ],
)
def test_a_spanning_sequence_asks_for_one_worker(
    changes: dict[str, Any], held: set[int], rejoins: bool
) -> None:
    worker = _worker(changes, held)

    worker._note_span(needs_one_worker(worker.engine))

    assert worker.one_worker is (changes != {})
    assert worker.rejoin_wanted is rejoins
    gauge = worker.metrics.registry.get_sample_value("dripstream_one_worker")
    assert gauge == (1.0 if changes else 0.0)


@pytest.mark.parametrize(
    ("one_worker", "rejoin_wanted", "held", "warned"),
    [
        (True, False, {0, 1, 2}, True),  # a group with a worker of an older version
        (True, True, {0, 1, 2}, False),  # it asks for them all: no alarm
        (True, False, set(range(6)), False),
        (False, False, {0, 1, 2}, False),
    ],
)
def test_holding_part_while_one_worker_is_needed_is_warned_of(
    caplog: pytest.LogCaptureFixture,
    one_worker: bool,
    rejoin_wanted: bool,
    held: set[int],
    warned: bool,
) -> None:
    worker = _worker(THROTTLE, held)
    worker.one_worker, worker.rejoin_wanted = one_worker, rejoin_wanted

    with caplog.at_level(logging.WARNING, logger="dripstream.worker"):
        worker._warn_of_a_split_span()

    said = [r.getMessage() for r in caplog.records if "need one worker" in r.getMessage()]
    assert said == ([WARNING] if warned else [])


def test_the_last_spanning_sequence_gone_still_needs_one_worker() -> None:
    # Its inputs stay in the store: a rebuild with part of the partitions would decide
    # them again without the others' throttle places.
    worker = _worker(THROTTLE, {0, 1, 2})
    worker._note_span(needs_one_worker(worker.engine))
    worker.engine = _engine({})
    worker.rejoin_wanted = False

    worker._note_span(needs_one_worker(worker.engine))

    assert worker.one_worker
    assert not worker.rejoin_wanted


class _Writes:
    """The writer's side a rejoin uses; a revocation may come while it waits."""

    def __init__(self, worker: EngineWorker, revoke: bool) -> None:
        self.worker, self.revoke, self.submitted = worker, revoke, 0

    async def submit(self, _record: object, _commits: object, *, wait: bool) -> None:
        assert wait
        self.submitted += 1
        if self.revoke:  # another worker's rejoin: this one's join tells the group too
            self.worker.rejoin_wanted = False

    def drop_pending(self) -> None:
        pass


@pytest.mark.parametrize("revoked_meanwhile", [False, True])
async def test_a_rejoin_records_first_and_joins_unless_a_rebalance_came_meanwhile(
    revoked_meanwhile: bool,
) -> None:
    worker = _worker(THROTTLE, {0, 1, 2})
    worker._note_span(needs_one_worker(worker.engine))
    subscribed: list[list[str]] = []
    worker.consumer = SimpleNamespace(subscribe=lambda topics, listener: subscribed.append(topics))
    worker.topics = ("p.contacts", "p.calls")
    worker.record, worker.commits, worker.generation = BatchRecord(), {}, 0
    writes = worker.writes = _Writes(worker, revoked_meanwhile)  # type: ignore[assignment]
    worker.rebuilding = False
    worker.metrics.groups_held.set(3)

    await worker._rejoin()

    assert writes.submitted == 1
    assert subscribed == ([] if revoked_meanwhile else [["p.contacts", "p.calls"]])
    assert worker.rejoin_wanted is False
    assert (worker.assigned == set()) is not revoked_meanwhile
    assert worker.rebuilding is not revoked_meanwhile
    held = worker.metrics.registry.get_sample_value("dripstream_partition_groups_held")
    assert held == (3.0 if revoked_meanwhile else 0.0)
