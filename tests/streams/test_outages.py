"""What counts as an outage to wait out, and stopping a Kafka client on the way out of one."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiokafka.errors import (  # type: ignore[import-untyped]
    LeaderNotAvailableError,
    NotLeaderForPartitionError,
    UnknownTopicOrPartitionError,
)

from streams import outages


async def test_a_broker_starting_again_is_an_outage_waited_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a run that meets a broker leading no partition yet, then one that has lost it
    monkeypatch.setattr(outages, "sleep_unless_stopped", _no_wait)
    met = [LeaderNotAvailableError(), NotLeaderForPartitionError()]

    async def run() -> None:
        if met:
            raise met.pop(0)

    # then it is started again after each, and ends when a run ends
    await outages.run_through_outages(run, asyncio.Event(), "test", logging.getLogger("t"))
    assert met == []


async def test_a_topic_gone_is_no_outage() -> None:
    async def run() -> None:
        raise UnknownTopicOrPartitionError()

    with pytest.raises(UnknownTopicOrPartitionError):
        await outages.run_through_outages(run, asyncio.Event(), "test", logging.getLogger("t"))


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
