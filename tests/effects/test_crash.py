"""Crash drill: an effects processor killed with SIGKILL again and again during 1,200 sends.

Given a file of SMS commands, the PostgreSQL ledger and the fake Twilio server (here, in the
parent), when a subprocess `dripstream effects --commands FILE` is killed several times
mid-run and restarted each time, then Twilio saw every effect id at most once, and every
effect ends sent, failed or unknown: none is lost, none is left pending or in flight.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import orjson
import psycopg
import pytest

from effects.fakes.twilio_server import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    INVALID_NUMBER,
    UNSUBSCRIBED_NUMBER,
    FakeTwilioServer,
)
from tests.effects.helpers import sms

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

COUNT = 1200
KILLS = 6
ROOT = Path(__file__).resolve().parents[2]


def recipient(n: int) -> str:
    if n % 97 == 0:
        return UNSUBSCRIBED_NUMBER
    if n % 89 == 0:
        return INVALID_NUMBER
    return f"+1646{n:07d}"


async def start_processor(
    commands: Path, outcomes: Path, twilio: FakeTwilioServer, database_url: str
) -> asyncio.subprocess.Process:
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_API_BASE": twilio.url,
        "EFFECTS_LINE_RATE": "100000",
        "EFFECTS_LINE_BURST": "100",
        "EFFECTS_CONCURRENCY": "16",
        "EFFECTS_BATCH_SIZE": "40",
        "EFFECTS_BACKOFF_BASE": "0.01",
        "EFFECTS_PUBLIC_URL": "https://effects.example.com",
    }
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ops.effects_cli",
        "effects",
        "--commands",
        str(commands),
        "--outcomes",
        str(outcomes),
        cwd=ROOT,
        env=environment,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_sigkill_during_sends_never_sends_twice_and_loses_nothing(
    tmp_path: Path, clean_database: str
) -> None:
    commands = tmp_path / "effects.jsonl"
    outcomes = tmp_path / "outcomes.jsonl"
    effect_ids = [f"fx:crash:c-{n}:1:s1:1" for n in range(COUNT)]
    commands.write_bytes(
        b"".join(
            sms(n, to=recipient(n), effect_id=effect_ids[n]).encode() + b"\n" for n in range(COUNT)
        )
    )
    kills = 0
    async with FakeTwilioServer(latency=0.01) as twilio:
        # when it is killed several times while sending
        for _ in range(KILLS):
            before = twilio.request_count
            process = await start_processor(commands, outcomes, twilio, clean_database)
            try:
                async with asyncio.timeout(60):
                    while twilio.request_count < before + COUNT // (KILLS + 2):
                        if process.returncode is not None:
                            break
                        await asyncio.sleep(0.01)
            finally:
                if process.returncode is None:
                    process.send_signal(signal.SIGKILL)
                    kills += 1
                await process.wait()
        # and then left to finish
        process = await start_processor(commands, outcomes, twilio, clean_database)
        _, errors = await asyncio.wait_for(process.communicate(), timeout=120)
        assert process.returncode == 0, errors.decode()[-2000:]

    # then Twilio saw each effect id at most once
    assert kills == KILLS
    assert twilio.requests_by_effect
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
