"""Crash drills: an effects processor killed with SIGKILL again and again while it sends.

Two drills: 1,200 sends with six kills and lines that never make a send wait; and, at the
benchmark's settings, 5,000 sends with five kills, 128 in progress and four lines whose
limit makes some sends wait (so both ledger paths are cut: claimed-and-started in one step,
and claimed then started when the line's turn comes).

Given a file of SMS commands, the PostgreSQL ledger and the fake Twilio server (here, in the
parent), when a subprocess `dripstream effects --commands FILE` is killed several times
mid-run and restarted each time, then Twilio saw every effect id at most once, and every
effect ends sent, failed or unknown: none is lost, none is left pending or in flight.
"""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass
from pathlib import Path

import orjson
import psycopg
import pytest

from effects.fakes.twilio_server import (
    INVALID_NUMBER,
    UNSUBSCRIBED_NUMBER,
    FakeTwilioServer,
)
from tests.effects.helpers import sms, start_effects

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Drill:
    count: int
    kills: int
    lines: tuple[str, ...] | None  # None: the default line of every command
    line_rate: str
    line_burst: str
    concurrency: str
    batch_size: str
    latency: float
    run_timeout: float
    finish_timeout: float


DRILLS = {
    "1200-sends-6-kills": Drill(1200, 6, None, "100000", "100", "16", "40", 0.01, 60, 120),
    # 4 lines at 400/s each, bursts of 20: under 128 sends at once, some wait their turn
    "5000-sends-5-kills-paced-lines": Drill(
        5000,
        5,
        ("+12125550000", "+12125550001", "+12125550002", "+12125550003"),
        "400",
        "20",
        "128",
        "500",
        0.005,
        120,
        300,
    ),
}


def recipient(n: int) -> str:
    if n % 97 == 0:
        return UNSUBSCRIBED_NUMBER
    if n % 89 == 0:
        return INVALID_NUMBER
    return f"+1646{n:07d}"


async def start_processor(
    drill: Drill, commands: Path, outcomes: Path, twilio: FakeTwilioServer, database_url: str
) -> asyncio.subprocess.Process:
    return await start_effects(
        twilio.url,
        database_url,
        *("--commands", str(commands), "--outcomes", str(outcomes)),
        stderr=asyncio.subprocess.PIPE,
        EFFECTS_LINE_RATE=drill.line_rate,
        EFFECTS_LINE_BURST=drill.line_burst,
        EFFECTS_CONCURRENCY=drill.concurrency,
        EFFECTS_BATCH_SIZE=drill.batch_size,
        EFFECTS_BACKOFF_BASE="0.01",
    )


def command_line(drill: Drill, n: int, effect_id: str) -> bytes:
    if drill.lines is None:
        return sms(n, to=recipient(n), effect_id=effect_id).encode() + b"\n"
    line = drill.lines[n % len(drill.lines)]
    return sms(n, to=recipient(n), effect_id=effect_id, from_number=line).encode() + b"\n"


@pytest.mark.parametrize("name", sorted(DRILLS))
async def test_sigkill_during_sends_never_sends_twice_and_loses_nothing(
    name: str, tmp_path: Path, clean_database: str
) -> None:
    drill = DRILLS[name]
    count, kills_wanted = drill.count, drill.kills
    commands = tmp_path / "effects.jsonl"
    outcomes = tmp_path / "outcomes.jsonl"
    effect_ids = [f"fx:crash:c-{n}:1:s1:1" for n in range(count)]
    commands.write_bytes(b"".join(command_line(drill, n, effect_ids[n]) for n in range(count)))
    kills = 0
    async with FakeTwilioServer(latency=drill.latency) as twilio:
        # when it is killed several times while sending
        for _ in range(kills_wanted):
            before = twilio.request_count
            process = await start_processor(drill, commands, outcomes, twilio, clean_database)
            try:
                async with asyncio.timeout(drill.run_timeout):
                    while twilio.request_count < before + count // (kills_wanted + 2):
                        if process.returncode is not None:
                            break
                        await asyncio.sleep(0.01)
            finally:
                if process.returncode is None:
                    process.send_signal(signal.SIGKILL)
                    kills += 1
                await process.wait()
        # and then left to finish
        process = await start_processor(drill, commands, outcomes, twilio, clean_database)
        _, errors = await asyncio.wait_for(process.communicate(), timeout=drill.finish_timeout)
        assert process.returncode == 0, errors.decode()[-2000:]

    # then Twilio saw each effect id at most once
    assert kills == kills_wanted
    assert len(twilio.requests_by_effect) > count // 2
    assert max(twilio.requests_by_effect.values()) == 1
    # and every effect is in the ledger, finished
    with psycopg.connect(clean_database) as conn:
        rows = conn.execute("SELECT effect_id, status, provider_id, code FROM effect_ledger")
        ledger = {effect_id: (status, sid, code) for effect_id, status, sid, code in rows}
    assert set(ledger) == set(effect_ids)
    statuses = {status for status, _, _ in ledger.values()}
    assert statuses <= {"sent", "failed", "unknown"}
    for effect_id, (status, sid, code) in ledger.items():
        accepted = twilio.sids_by_effect.get(effect_id)
        if status == "sent":
            assert accepted == [sid], effect_id
        if status == "failed":
            assert not accepted, effect_id  # a failure is an answer: Twilio refused it
            assert code in {"21610", "21211"}, (effect_id, code)
        if accepted:
            assert status in {"sent", "unknown"}, effect_id
        if status == "unknown":
            # in flight at a kill: whether or not Twilio got it, it was never resent
            assert twilio.requests_by_effect[effect_id] <= 1, effect_id
    # and the outcomes say the same (an effect may be announced more than once, same id)
    announced: dict[str, set[str]] = {}
    for line in outcomes.read_bytes().splitlines():
        event = orjson.loads(line)
        effect_id = event["id"].rsplit("/", 1)[0]  # outcome ids are <effect id>/<what>
        announced.setdefault(effect_id, set()).add(event["type"])
    assert set(announced) == set(effect_ids)
    for effect_id, (status, _, _) in ledger.items():
        assert f"effect.{status}" in announced[effect_id], effect_id
    print(
        f"kills={kills} sent={sum(s == 'sent' for s, _, _ in ledger.values())}"
        f" failed={sum(s == 'failed' for s, _, _ in ledger.values())}"
        f" unknown={sum(s == 'unknown' for s, _, _ in ledger.values())}"
    )
