"""The effects worker's metrics: what it published, by type, what it dead-lettered, and the
sends it tried again."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from effects import outcomes
from effects.fakes.senders import FakeSenders
from effects.ledger_memory import InMemoryLedger
from effects.ports import Transient
from effects.processor import EffectProcessor
from effects.worker import KafkaPublisher
from schemas.dead_letters import RejectedRecord
from tests.effects.helpers import T0, Sleeps, sms

CONTEXT = {"effect_type": "sms.send", "sequence_id": "welcome", "contact_id": "c-1"}


class FakeProducer:
    """Acknowledges every record at once, and keeps what it was sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    async def send(
        self, topic: str, value: bytes, key: bytes | None = None, headers: Any = None
    ) -> Any:
        self.sent.append((topic, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def test_published_outcomes_and_dead_letters_are_counted_and_served() -> None:
    producer = FakeProducer()
    publisher = KafkaPublisher(producer, "dripstream.")
    await publisher.publish_many(
        [
            outcomes.effect_sent("fx:1", CONTEXT, "twilio", "SM1", T0),
            outcomes.effect_sent("fx:2", CONTEXT, "twilio", "SM2", T0),
            outcomes.effect_failed("fx:3", CONTEXT, "invalid number", "21211", T0),
        ]
    )
    await publisher.dead_letter(
        RejectedRecord("dripstream.effects", 0, 7, None, b"{", "event", "x")
    )

    response = await publisher.metrics.serve(None)  # type: ignore[arg-type]

    assert response.body is not None
    text = bytes(response.body).decode()  # type: ignore[arg-type]
    assert 'dripstream_effects_published_total{type="effect.sent"} 2.0' in text
    assert 'dripstream_effects_published_total{type="effect.failed"} 1.0' in text
    assert "dripstream_effects_dead_letters_total 1.0" in text
    assert [topic for topic, _ in producer.sent] == ["dripstream.outcomes"] * 3 + ["dripstream.dlq"]


class HeldProducer(FakeProducer):
    """Acknowledges each record only when told to (or refuses it)."""

    def __init__(self) -> None:
        super().__init__()
        self.futures: list[asyncio.Future[None]] = []

    async def send(
        self, topic: str, value: bytes, key: bytes | None = None, headers: Any = None
    ) -> Any:
        self.sent.append((topic, value))
        self.futures.append(asyncio.get_running_loop().create_future())
        return self.futures[-1]


def published(publisher: KafkaPublisher, kind: str) -> float | None:
    return publisher.metrics.registry.get_sample_value(
        "dripstream_effects_published_total", {"type": kind}
    )


async def test_each_outcome_is_counted_when_acknowledged_not_when_its_batch_is() -> None:
    producer = HeldProducer()
    publisher = KafkaPublisher(producer, "dripstream.")
    sent = await publisher.send(
        [
            outcomes.effect_sent("fx:1", CONTEXT, "twilio", "SM1", T0),
            outcomes.effect_sent("fx:2", CONTEXT, "twilio", "SM2", T0),
            outcomes.effect_sent("fx:3", CONTEXT, "twilio", "SM3", T0),
        ]
    )
    assert published(publisher, "effect.sent") in (None, 0)

    producer.futures[0].set_result(None)
    producer.futures[1].set_exception(RuntimeError("refused"))
    await asyncio.sleep(0)

    # the first is counted while the third waits; the refused one never is
    assert published(publisher, "effect.sent") == 1
    producer.futures[2].set_result(None)
    with pytest.raises(RuntimeError, match="refused"):
        await publisher.acknowledged(sent)
    assert published(publisher, "effect.sent") == 2


async def test_the_sends_tried_again_are_counted_from_the_processor() -> None:
    # given a processor whose text was refused twice for now, then sent
    answers = [Transient("twilio 503", "503"), Transient("twilio 429", "429")]
    fakes, sleeps = FakeSenders(), Sleeps()
    fakes.sms.script = lambda to: answers.pop(0) if answers else None
    processor = EffectProcessor(
        ledger=InMemoryLedger("p-1"), senders=fakes.senders(), clock=sleeps.clock, sleep=sleeps
    )
    publisher = KafkaPublisher(FakeProducer(), "dripstream.")
    publisher.metrics.count_retries(lambda: processor.retries)
    await processor.handle(sms())
    # then the scrape says two retries
    response = await publisher.metrics.serve(None)  # type: ignore[arg-type]
    text = bytes(response.body).decode()  # type: ignore[arg-type]
    assert "dripstream_effects_retries_total 2.0" in text
