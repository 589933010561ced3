"""What counts as an outage to wait out, and stopping a Kafka client on the way out of one."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # type: ignore[import-untyped]
from aiokafka.client import AIOKafkaClient  # type: ignore[import-untyped]
from aiokafka.cluster import ClusterMetadata  # type: ignore[import-untyped]
from aiokafka.errors import (  # type: ignore[import-untyped]
    KafkaConnectionError,
    KafkaError,
    LeaderNotAvailableError,
    NotLeaderForPartitionError,
    UnknownTopicOrPartitionError,
)

from streams import outages


async def test_a_broker_starting_again_is_an_outage_waited_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a run that meets a broker leading no partition yet, then one that has lost it
    met = [LeaderNotAvailableError(), NotLeaderForPartitionError()]
    # then it is started again after each, and ends when a run ends
    await _run_meeting(met, monkeypatch)
    assert met == []


async def test_a_topic_gone_is_no_outage() -> None:
    async def run() -> None:
        raise UnknownTopicOrPartitionError()

    with pytest.raises(UnknownTopicOrPartitionError):
        await outages.run_through_outages(run, asyncio.Event(), "test", logging.getLogger("t"))


async def _run_meeting(met: list[Exception], monkeypatch: pytest.MonkeyPatch) -> None:
    """run_through_outages of a run that raises each of `met` in turn, then ends."""
    monkeypatch.setattr(outages, "sleep_unless_stopped", _no_wait)

    async def run() -> None:
        if met:
            raise met.pop(0)

    await outages.run_through_outages(run, asyncio.Event(), "test", logging.getLogger("t"))


def _sender_died() -> KafkaError:
    """What a transactional producer's next send raises after its sender met a closed
    connection looking for its coordinator (aiokafka/producer/sender.py): a KafkaError
    raised from a KafkaError raised from the connection's error."""
    lost = KafkaConnectionError("Connection at 127.0.0.1:9092 closed")
    found = KafkaError(repr(lost))
    found.__cause__ = lost
    error = KafkaError("Unexpected error during batch delivery")
    error.__cause__ = found
    return error


async def test_a_producer_whose_sender_died_of_a_lost_connection_is_an_outage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    met: list[Exception] = [_sender_died()]
    await _run_meeting(met, monkeypatch)
    assert met == []


async def test_a_kafka_error_with_no_outage_behind_it_still_stops() -> None:
    async def run() -> None:
        try:
            raise ValueError("a bug")
        except ValueError as bug:
            raise KafkaError("Unexpected error during batch delivery") from bug

    with pytest.raises(KafkaError):
        await outages.run_through_outages(run, asyncio.Event(), "test", logging.getLogger("t"))


async def test_a_bug_met_while_handling_an_outage_still_stops() -> None:
    async def run() -> None:
        try:
            raise KafkaConnectionError("lost")
        except KafkaConnectionError:
            raise ValueError("a bug in the handling") from None

    with pytest.raises(ValueError, match="a bug in the handling"):
        await outages.run_through_outages(run, asyncio.Event(), "test", logging.getLogger("t"))


async def test_a_paced_client_waits_the_backoff_after_a_failed_metadata_refresh() -> None:
    # given a producer and a consumer, paced, that know no broker (not started)
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", retry_backoff_ms=300)
    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1", retry_backoff_ms=300)
    outages.pace(producer)
    outages.pace(consumer)
    loop = asyncio.get_running_loop()
    try:
        for client in (producer.client, consumer._client):
            # when a metadata refresh fails
            started = loop.time()
            updated = await client._metadata_update(ClusterMetadata(), None)
            # then it says so only after the backoff: the producer's sender, which waits
            # for the refresh alone, no longer asks again at once, thousands of times a
            # second while the broker is down
            assert updated is False
            assert loop.time() - started >= 0.3
            assert isinstance(client, AIOKafkaClient)  # still aiokafka's client, paced
    finally:
        await producer.stop()
        await consumer.stop()


def test_pacing_leaves_other_clients_as_they_are() -> None:
    fake = type("Fake", (), {"client": object()})()
    before = fake.client
    outages.pace(fake)
    assert fake.client is before


class CancelledOnStop:
    """A client whose stop() raises the CancelledError of its own tasks, as aiokafka's
    consumer did with the broker away."""

    stopped = False

    async def stop(self) -> None:
        self.stopped = True
        raise asyncio.CancelledError


async def test_a_client_stopping_with_its_own_tasks_cancelled_does_not_end_the_caller() -> None:
    client = CancelledOnStop()
    await outages.stop_client(client)
    assert client.stopped


async def test_a_caller_cancelled_while_it_stops_a_client_is_still_cancelled() -> None:
    client = CancelledOnStop()
    started = asyncio.Event()

    async def stopping() -> None:
        started.set()
        await asyncio.sleep(3600)

    async def caller() -> None:
        try:
            await stopping()
        finally:
            await outages.stop_client(client)

    task = asyncio.create_task(caller())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert client.stopped


async def _no_wait(_stopping: asyncio.Event, _seconds: float) -> None:
    return None
