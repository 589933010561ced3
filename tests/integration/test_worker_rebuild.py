"""A rebuild longer than the consumer's session timeout keeps the worker in its group: it
runs from the worker's loop, where heartbeats go on (aiokafka sends none while a rebalance
callback runs; a rebuild inside one got the worker expelled, to rebuild again, for ever)."""

from __future__ import annotations

import asyncio
import time

import pytest

from streams.engine_rebuild import Replayed
from streams.worker import EngineWorker, WorkerSettings

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.timeout(180)]

SESSION_MS = 6_000  # the broker's floor for a session timeout
REBUILD_S = 9.0  # longer than the session


async def test_a_rebuild_longer_than_the_session_keeps_the_worker_in_its_group(
    kafka_bootstrap: str,
    pipeline_prefix: str,
    fresh_database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = WorkerSettings(
        kafka_bootstrap,
        fresh_database_url,
        topic_prefix=pipeline_prefix,
        clock="event",
        relay=False,
        session_timeout_ms=SESSION_MS,
    )
    worker = EngineWorker(settings)
    rebuilds: list[float] = []
    replay_store = worker._replay_store

    def slow_replay(names: list[str], groups: frozenset[int]) -> Replayed:
        rebuilds.append(time.monotonic())
        time.sleep(REBUILD_S)  # a store of many inputs
        return replay_store(names, groups)

    monkeypatch.setattr(worker, "_replay_store", slow_replay)
    running = asyncio.create_task(worker.run())
    try:
        # given the worker's first assignment, rebuilt slowly, and time for an expelled
        # member to notice, rejoin and rebuild again
        await asyncio.sleep(REBUILD_S + 3 * SESSION_MS / 1000)
        # then it was rebuilt once, and it holds its partitions, ready to decide
        assert len(rebuilds) == 1
        assert worker.assigned
        assert not worker.stale
        assert not worker.rebuilding
    finally:
        worker.stopping.set()
        await asyncio.wait_for(running, 60)
