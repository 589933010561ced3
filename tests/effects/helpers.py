"""The one small helper of these tests: effect commands, a clock and a sleep you can watch."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from effects.fakes.twilio_server import ACCOUNT_SID, AUTH_TOKEN
from schemas.envelope import CloudEvent

ROOT = Path(__file__).resolve().parents[2]

T0 = datetime(2027, 7, 2, 14, 0, tzinfo=UTC)
LINE = "+12125550000"


def command(kind: str, n: int = 1, **data: Any) -> CloudEvent:
    """An effect command as the engine writes it; `n` varies the effect id."""
    effect_id = data.pop("effect_id", f"fx:welcome:c-{n}:1:s1:1")
    payload = {
        "effect_id": effect_id,
        "step_id": "s1",
        "sequence_id": "welcome",
        "contact_id": f"c-{n}",
        "enrollment_id": f"welcome:c-{n}:1",
        **data,
    }
    return CloudEvent(
        id=f"in-{n}/0",
        source="dripstream",
        type=kind,
        time=T0,
        subject=f"c-{n}",
        data=payload,
    )


def sms(n: int = 1, to: str = "+12125550101", **data: Any) -> CloudEvent:
    fields: dict[str, Any] = {"from_line": "line-1", "from_number": LINE, "body": "Hi!"}
    return command("sms.send", n, to=to, **(fields | data))


@dataclass
class Clock:
    """A wall clock that moves only when told (or when the fake sleep sleeps)."""

    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def monotonic(self) -> float:
        return (self.now - T0).total_seconds()


@dataclass
class Sleeps:
    """An `asyncio.sleep` that returns at once, records the delay and moves the clock."""

    clock: Clock = field(default_factory=Clock)
    delays: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.clock.advance(seconds)


def types_of(events: list[CloudEvent]) -> list[str]:
    return [event.type for event in events]


async def start_effects(
    twilio_url: str,
    database_url: str,
    *args: str,
    stderr: int = asyncio.subprocess.DEVNULL,
    **settings: str,
) -> asyncio.subprocess.Process:
    """`dripstream effects ARGS` in a process of its own, with the PostgreSQL ledger at
    `database_url` and the fake Twilio at `twilio_url`; `settings` are more of its
    environment (EFFECTS_*, the Kafka ones)."""
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_API_BASE": twilio_url,
        "EFFECTS_PUBLIC_URL": "https://effects.example.com",
        **settings,
    }
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ops.effects_cli",
        "effects",
        *args,
        cwd=ROOT,
        env=environment,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=stderr,
    )
