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
from streams.worker import EngineWorker, spanning_contacts
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
    worker.engine = _engine(changes)
    worker.one_worker = False
    worker.rejoin_wanted = False
    worker.partition_count = 6
    worker.assigned = {TopicPartition("p.contacts", n) for n in held}
    worker.consumer = SimpleNamespace(partitions_for_topic=lambda _topic: set(range(6)))
    return worker


@pytest.mark.parametrize(
    ("changes", "held", "rejoins", "warned"),
    [
        (THROTTLE, {0, 1, 2}, True, True),
        (ROUND_ROBIN, {0, 1, 2}, True, True),
        (CHANGE_OWNER, {0, 1, 2}, True, True),
        (THROTTLE, set(range(6)), False, False),  # keeps them all at the next join
        (THROTTLE, set(), False, False),  # the workers holding them ask
        ({}, {0, 1, 2}, False, False),
    ],
)
def test_a_spanning_sequence_asks_for_one_worker(
    caplog: pytest.LogCaptureFixture,
    changes: dict[str, Any],
    held: set[int],
    rejoins: bool,
    warned: bool,
) -> None:
    worker = _worker(changes, held)
    with caplog.at_level(logging.WARNING, logger="dripstream.worker"):
        worker._note_span(bool(spanning_contacts(worker.engine)))
        worker._warn_of_a_split_span()

    assert worker.one_worker is (changes != {})
    assert worker.rejoin_wanted is rejoins
    said = [r.getMessage() for r in caplog.records if "need one worker" in r.getMessage()]
    assert said == ([WARNING] if warned else [])


def test_the_last_spanning_sequence_gone_still_needs_one_worker() -> None:
    # Its inputs stay in the store: a rebuild with part of the partitions would decide
    # them again without the others' throttle places.
    worker = _worker(THROTTLE, {0, 1, 2})
    worker._note_span(bool(spanning_contacts(worker.engine)))
    worker.engine = _engine({})
    worker.rejoin_wanted = False

    worker._note_span(bool(spanning_contacts(worker.engine)))

    assert worker.one_worker
    assert not worker.rejoin_wanted
