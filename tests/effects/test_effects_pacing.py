"""Pacing and the ledger: a send whose line is free is claimed and put in flight in one
ledger step; one that must wait for its line waits claimed (`pending`), never in flight."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta

import pytest

from effects.fakes.senders import FakeSenders
from effects.ledger import PENDING, SENT
from effects.ledger_memory import InMemoryLedger
from effects.ports import EffectId
from effects.processor import EffectProcessor
from effects.ratelimit import LineRateLimiter
from schemas.envelope import format_time
from tests.effects.helpers import T0, Sleeps, sms, types_of


@dataclass
class GatedSleep:
    """A line limiter's sleep that waits until the test lets it go."""

    delays: list[float] = field(default_factory=list)
    waiting: asyncio.Event = field(default_factory=asyncio.Event)
    go: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.waiting.set()
        await self.go.wait()

    async def someone_waits(self) -> None:
        """Until a send waits at the gate: a failure, not a hang, when none ever does."""
        try:
            await asyncio.wait_for(self.waiting.wait(), timeout=5)
        except TimeoutError:
            pytest.fail("no send waited for its line", pytrace=False)


def frozen_limiter(rate: float, burst: int, sleep: Sleeps | GatedSleep) -> LineRateLimiter:
    return LineRateLimiter(rate, burst, monotonic=lambda: 0.0, sleep=sleep)


def processor(
    ledger: InMemoryLedger, fakes: FakeSenders, limiter: LineRateLimiter
) -> EffectProcessor:
    sleeps = Sleeps()
    return EffectProcessor(
        ledger=ledger,
        senders=fakes.senders(),
        clock=sleeps.clock,
        sleep=sleeps,
        message_limiter=limiter,
    )


async def test_a_send_waiting_for_its_line_waits_claimed_not_in_flight() -> None:
    # given a line whose only token the first text takes
    ledger, fakes, gate = InMemoryLedger("p-1"), FakeSenders(), GatedSleep()
    effects = processor(ledger, fakes, frozen_limiter(1.0, 1, gate))
    await effects.handle(sms(1))
    # when a second text for that line comes
    second = asyncio.create_task(effects.handle(sms(2)))
    await gate.someone_waits()
    # then, while it waits for the line, it is claimed and was never attempted
    entry = await ledger.get(EffectId("fx:welcome:c-2:1:s1:1"))
    assert entry is not None
    assert (entry.status, entry.attempts) == (PENDING, 0)
    assert len(fakes.sms.sent) == 1
    # and once its turn comes it goes out
    gate.go.set()
    assert types_of(await second) == ["effect.sent"]
    assert gate.delays == [1.0]
    assert len(fakes.sms.sent) == 2


async def test_a_crash_while_waiting_for_the_line_loses_nothing() -> None:
    # given a text waiting for its line when the processor dies
    ledger, fakes, gate = InMemoryLedger("p-1"), FakeSenders(), GatedSleep()
    effects = processor(ledger, fakes, frozen_limiter(1.0, 1, gate))
    await effects.handle(sms(1))
    waiting = asyncio.create_task(effects.handle(sms(2)))
    await gate.someone_waits()
    waiting.cancel()
    # when a new processor starts and the command is redelivered
    restarted = ledger.restarted("p-2")
    again = processor(restarted, fakes, frozen_limiter(1000.0, 10, Sleeps()))
    assert await again.recover() == []  # nothing was in flight: nothing is unknown
    # then it is sent, once
    assert types_of(await again.handle(sms(2))) == ["effect.sent"]
    assert [m.effect_id for m in fakes.sms.sent] == [
        "fx:welcome:c-1:1:s1:1",
        "fx:welcome:c-2:1:s1:1",
    ]


async def test_a_duplicate_gives_its_line_token_back() -> None:
    # given a line with two tokens, one taken by a text that was sent
    ledger, fakes, sleeps = InMemoryLedger("p-1"), FakeSenders(), Sleeps()
    effects = processor(ledger, fakes, frozen_limiter(1.0, 2, sleeps))
    await effects.handle(sms(1))
    # when that text is redelivered, and then a new one comes
    assert types_of(await effects.handle(sms(1))) == ["effect.sent"]
    assert types_of(await effects.handle(sms(2))) == ["effect.sent"]
    # then the duplicate used no token: the new text did not wait
    assert sleeps.delays == []
    assert len(fakes.sms.sent) == 2
    entry = await ledger.get(EffectId("fx:welcome:c-2:1:s1:1"))
    assert entry is not None
    assert (entry.status, entry.attempts) == (SENT, 1)


def test_a_free_token_is_taken_only_when_nobody_waits() -> None:
    limiter = frozen_limiter(1.0, 2, Sleeps())
    assert limiter.try_take("line") is True
    assert limiter.try_take("line") is True
    assert limiter.try_take("line") is False  # none left: the caller must queue
    assert limiter.reserve("line") == 1.0


def test_a_token_given_back_while_others_wait_is_dropped() -> None:
    limiter = frozen_limiter(1.0, 1, Sleeps())
    assert limiter.try_take("line") is True
    limiter.give_back("line")
    assert limiter.try_take("line") is True  # nobody was waiting: it came back
    assert limiter.reserve("line") == 1.0  # someone now waits for the next slot
    limiter.give_back("line")
    # handing it on would put two sends in the waiter's slot: it is dropped instead
    assert limiter.reserve("line") == 2.0


async def test_texts_already_past_their_window_fail_without_a_turn_on_the_line() -> None:
    # given a busy line (one text a second) and a backlog of texts whose quiet-hours window
    # closed before they were read (an outage, say), then one still in time
    ledger, fakes, sleeps = InMemoryLedger("p-1"), FakeSenders(), Sleeps()
    effects = processor(ledger, fakes, frozen_limiter(1.0, 1, sleeps))
    closed = format_time(T0 - timedelta(minutes=1))
    late = [sms(n, send_before=closed) for n in range(1, 13)]
    outcomes = await effects.handle_batch([sms(0), *late, sms(13)])
    # then each late text fails as expired at once, and the one in time waits only for
    # the text before it: one slot, not thirteen
    assert [e.data["code"] for e in outcomes[1:13]] == ["expired"] * 12
    assert types_of([outcomes[0], outcomes[13]]) == ["effect.sent", "effect.sent"]
    assert sleeps.delays == [1.0]
