"""A worker's rebuild from the store (streams/worker.py); its writes are tested in
tests/streams/test_batch_writer.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from streams.store import BatchRecord, InputRecord
from streams.worker import EngineWorker, WorkerSettings

pytestmark = [pytest.mark.postgres]


@pytest.fixture
async def worker(database_url: str, pg_schema: str) -> AsyncIterator[EngineWorker]:
    # The consumer is never started: the test only rebuilds from the store.
    made = EngineWorker(WorkerSettings("127.0.0.1:1", database_url, schema=pg_schema, relay=False))
    try:
        yield made
    finally:
        made.store.close()


def test_a_rebuild_over_two_inputs_that_reuse_an_id_goes_on(worker: EngineWorker) -> None:
    # given two inputs under one id with different contents, each accepted by another
    # engine (two processes, or one before and after a rebalance), on two partitions
    def tagged(contact: str, time: str) -> bytes:
        return (
            b'{"specversion":"1.0","id":"x","source":"crm","type":"contact.tag_added",'
            b'"time":"' + time.encode() + b'","subject":"' + contact.encode() + b'",'
            b'"data":{"contact_id":"' + contact.encode() + b'","tag":"hot"}}'
        )

    first = InputRecord("p.contacts", 0, 0, None, 0, tagged("a", "2027-07-06T10:00:00Z"))
    second = InputRecord("p.contacts", 1, 0, None, 0, tagged("b", "2027-07-06T11:00:00Z"))
    worker.store.write(BatchRecord(stored=[first.stored(), second.stored()]))
    # when one engine is rebuilt over both partitions
    replayed = worker._replay_store(["p.contacts:0", "p.contacts:1"], frozenset({0, 1}))
    # then the rebuild goes on (the second is refused as it would be live), not crashes
    assert replayed.inputs == 2
    assert replayed.engine.now is not None
