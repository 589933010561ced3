"""The relay waits out a lost PostgreSQL or broker, longer on each try of one outage and
afresh for the next; other errors stop it."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import KafkaConnectionError  # type: ignore[import-untyped]

from streams import outages
from streams.relay import Relay, RelaySettings


class FlakyRelay(Relay):
    """`run` plays a script: a number means "ran that many seconds, then lost the broker",
    None means "ran to its end"."""

    def __init__(self, script: list[float | None]) -> None:
        super().__init__(RelaySettings("127.0.0.1:1", "postgresql://nowhere/none", "p."))
        self.script = script

    async def run(self, stopping: asyncio.Event) -> None:
        lasted = self.script.pop(0)
        if lasted is None:
            return
        await asyncio.sleep(lasted)
        raise KafkaConnectionError("broker gone")


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    taken: list[float] = []

    async def sleep_or_stop(stopping: asyncio.Event, seconds: float) -> None:
        taken.append(seconds)

    monkeypatch.setattr(outages, "sleep_unless_stopped", sleep_or_stop)
    monkeypatch.setattr(outages, "FRESH_AFTER", 0.05)  # "ran a while", for the test
    return taken


async def test_each_try_of_an_outage_waits_longer_and_a_new_outage_starts_afresh(
    waits: list[float],
) -> None:
    # given two quick failures, then a run that went on a while before the next outage
    relay = FlakyRelay([0.0, 0.0, 0.2, 0.0, None])
    await relay.run_through_outages(asyncio.Event())
    # then the waits grow within an outage and start again at the first for the next
    assert waits == [0.5, 1.0, 0.5, 1.0]


async def test_an_outage_while_told_to_stop_stops_it(waits: list[float]) -> None:
    stopping = asyncio.Event()
    stopping.set()
    with pytest.raises(KafkaConnectionError):
        await FlakyRelay([0.0, None]).run_through_outages(stopping)
    assert waits == []


async def test_another_error_stops_it(waits: list[float]) -> None:
    class Broken(Relay):
        async def run(self, stopping: asyncio.Event) -> None:
            raise ValueError("a record over the broker's size limit")

    broken = Broken(RelaySettings("127.0.0.1:1", "postgresql://nowhere/none", "p."))
    with pytest.raises(ValueError, match="size limit"):
        await broken.run_through_outages(asyncio.Event())
    assert waits == []
