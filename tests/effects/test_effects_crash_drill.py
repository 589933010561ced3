"""Crash drill at the benchmark's settings: 5,000 texts, the effects worker SIGKILLed five
times mid-run, PostgreSQL ledger, 128 sends in progress, four lines of which the limit
makes some sends wait (so both ledger paths are cut: claimed-and-started in one step, and
claimed then started when the line's turn comes).

Given a file of SMS commands and the fake Twilio server (in this process, counting what it
receives), when `dripstream effects --commands FILE` is killed five times and then left to
finish, then Twilio received every effect id at most once, every effect ends sent, failed
or unknown (none lost, none left pending or in flight), and the outcomes say the same.
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

COUNT = 5000
KILLS = 5
LINES = ["+12125550000", "+12125550001", "+12125550002", "+12125550003"]
ROOT = Path(__file__).resolve().parents[2]


def recipient(n: int) -> str:
    if n % 97 == 0:
        return UNSUBSCRIBED_NUMBER
    if n % 89 == 0:
        return INVALID_NUMBER
    return f"+1646{n:07d}"


async def start_worker(
    commands: Path, outcomes: Path, twilio: FakeTwilioServer, database_url: str
) -> asyncio.subprocess.Process:
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_API_BASE": twilio.url,
        # 4 lines at 400/s each, bursts of 20: under 128 sends at once, some wait their turn
        "EFFECTS_LINE_RATE": "400",
        "EFFECTS_LINE_BURST": "20",
        "EFFECTS_CONCURRENCY": "128",
        "EFFECTS_BATCH_SIZE": "500",
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


async def test_five_kills_during_5000_sends_never_send_twice_and_lose_nothing(
    tmp_path: Path, clean_database: str
) -> None:
    commands = tmp_path / "effects.jsonl"
    outcomes = tmp_path / "outcomes.jsonl"
    effect_ids = [f"fx:drill:c-{n}:1:s1:1" for n in range(COUNT)]
    commands.write_bytes(
        b"".join(
            sms(n, to=recipient(n), effect_id=effect_ids[n], from_number=LINES[n % 4]).encode()
            + b"\n"
            for n in range(COUNT)
        )
    )
    kills = 0
    async with FakeTwilioServer(latency=0.005) as twilio:
        # when it is killed five times while sending
        for _ in range(KILLS):
            before = twilio.request_count
            process = await start_worker(commands, outcomes, twilio, clean_database)
            try:
                async with asyncio.timeout(120):
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
        process = await start_worker(commands, outcomes, twilio, clean_database)
        _, errors = await asyncio.wait_for(process.communicate(), timeout=300)
        assert process.returncode == 0, errors.decode()[-2000:]

    # then Twilio received each effect id at most once
    assert kills == KILLS
    assert len(twilio.requests_by_effect) > COUNT // 2
    assert max(twilio.requests_by_effect.values()) == 1
    # and every effect is in the ledger, finished, agreeing with what Twilio accepted
    with psycopg.connect(clean_database) as conn:
        rows = conn.execute("SELECT effect_id, status, provider_id, code FROM effect_ledger")
        ledger = {effect_id: (status, sid, code) for effect_id, status, sid, code in rows}
    assert set(ledger) == set(effect_ids)
    assert {status for status, _, _ in ledger.values()} <= {"sent", "failed", "unknown"}
    for effect_id, (status, sid, code) in ledger.items():
        accepted = twilio.sids_by_effect.get(effect_id)
        if status == "sent":
            assert accepted == [sid], effect_id
        if status == "failed":
            assert not accepted, effect_id  # a failure is Twilio's refusal
            assert code in {"21610", "21211"}, (effect_id, code)
        if accepted:
            assert status in {"sent", "unknown"}, effect_id
    # and the outcomes announce each effect's final status (possibly more than once)
    announced: dict[str, set[str]] = {}
    for line in outcomes.read_bytes().splitlines():
        event = orjson.loads(line)
        effect_id = event["id"].rsplit("/", 1)[0]
        announced.setdefault(effect_id, set()).add(event["type"])
    assert set(announced) == set(effect_ids)
    for effect_id, (status, _, _) in ledger.items():
        assert f"effect.{status}" in announced[effect_id], effect_id
    statuses = [status for status, _, _ in ledger.values()]
    print(
        f"kills={kills} sent={statuses.count('sent')} failed={statuses.count('failed')}"
        f" unknown={statuses.count('unknown')}"
    )
