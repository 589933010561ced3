"""A worker holding only some partitions warns when a sequence has a throttle: its places
span partitions, and a rebuild may place steps otherwise than published (README)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from aiokafka import TopicPartition  # type: ignore[import-untyped]

from aggregates.engine import Engine
from aggregates.sequence import Catalog
from schemas.definitions import validate_definition_document
from streams.worker import EngineWorker
from tests.engine.helpers import ACCOUNT, sequence


def _worker(throttle: int | None, held: set[int]) -> EngineWorker:
    document = validate_definition_document(
        {"account": ACCOUNT, "sequences": [sequence(throttle_per_minute=throttle)]}
    )
    worker = object.__new__(EngineWorker)
    worker.engine = Engine(Catalog.from_document(document))
    worker.assigned = {TopicPartition("p.contacts", n) for n in held}
    worker.consumer = SimpleNamespace(partitions_for_topic=lambda _topic: set(range(6)))
    return worker


@pytest.mark.parametrize(
    ("throttle", "held", "warned"),
    [(2, {0, 1, 2}, True), (2, set(range(6)), False), (None, {0, 1, 2}, False)],
)
def test_a_throttle_split_over_workers_is_warned_of(
    caplog: pytest.LogCaptureFixture, throttle: int | None, held: set[int], warned: bool
) -> None:
    with caplog.at_level(logging.WARNING, logger="dripstream.worker"):
        _worker(throttle, held)._warn_of_a_split_throttle()
    said = [r.getMessage() for r in caplog.records if "have a throttle" in r.getMessage()]
    assert said == (
        [
            "this worker holds 3 of 6 partitions while sequences seq have a throttle,"
            " whose places span partitions: until one worker holds them all, steps may"
            " run otherwise than published (README)"
        ]
        if warned
        else []
    )
