"""A worker holding only some partitions warns when a sequence spans contacts (a throttle, a
round robin, owner changes): a rebuild may decide otherwise than was published (README)."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition  # type: ignore[import-untyped]

from aggregates.engine import Engine
from aggregates.sequence import Catalog
from schemas.definitions import validate_definition_document
from streams.worker import EngineWorker
from tests.engine.helpers import ACCOUNT, sequence


def _worker(changes: dict[str, Any], held: set[int]) -> EngineWorker:
    document = validate_definition_document(
        {"account": ACCOUNT, "sequences": [sequence(**changes)]}
    )
    worker = object.__new__(EngineWorker)
    worker.engine = Engine(Catalog.from_document(document))
    worker.assigned = {TopicPartition("p.contacts", n) for n in held}
    worker.consumer = SimpleNamespace(partitions_for_topic=lambda _topic: set(range(6)))
    return worker


THROTTLE = {"throttle_per_minute": 2}
CHANGE_OWNER = {
    "steps": [{"id": "co", "type": "change_owner", "owner_id": "u-1", "delay": {"kind": "none"}}]
}
ROUND_ROBIN = {
    "steps": [
        {"id": "rr", "type": "round_robin_owner", "owners": ["u-1"], "delay": {"kind": "none"}}
    ]
}


@pytest.mark.parametrize(
    ("changes", "held", "warned"),
    [
        (THROTTLE, {0, 1, 2}, True),
        (ROUND_ROBIN, {0, 1, 2}, True),
        (CHANGE_OWNER, {0, 1, 2}, True),
        (THROTTLE, set(range(6)), False),
        ({}, {0, 1, 2}, False),
    ],
)
def test_a_sequence_spanning_contacts_split_over_workers_is_warned_of(
    caplog: pytest.LogCaptureFixture, changes: dict[str, Any], held: set[int], warned: bool
) -> None:
    with caplog.at_level(logging.WARNING, logger="dripstream.worker"):
        _worker(changes, held)._warn_of_a_split_span()
    said = [r.getMessage() for r in caplog.records if "span contacts" in r.getMessage()]
    assert said == (
        [
            "this worker holds 3 of 6 partitions while sequences seq span contacts (a"
            " throttle or owner changes): until one worker holds them all, steps may run"
            " otherwise than published (README)"
        ]
        if warned
        else []
    )
