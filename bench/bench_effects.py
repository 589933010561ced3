"""SMS sends per second through one effect processor against the fake Twilio server.

The fake server runs in its own process (on the other core), the processor here: the real
twilio SDK (both transports), the in-memory ledger or PostgreSQL (`--database-url`), bounded
concurrency, a line limit high enough not to matter.

    .venv/bin/python bench/bench_effects.py [--count 5000] [--concurrency 64]
        [--transport async|threads|both] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import psycopg

from effects.fakes.senders import FakeSenders
from effects.fakes.twilio_server import ACCOUNT_SID, AUTH_TOKEN
from effects.ledger import InMemoryLedger, Ledger, PostgresLedger
from effects.processor import EffectProcessor
from effects.ratelimit import LineRateLimiter
from effects.twilio_http import build_twilio_client, close_twilio_client
from effects.twilio_senders import TwilioSmsSender
from effects.twiml import CallbackUrls
from schemas.envelope import CloudEvent

LINES = ["+12125550000", "+12125550001", "+12125550002", "+12125550003"]


def commands(count: int, run: str) -> list[CloudEvent]:
    now = datetime.now(UTC)
    return [
        CloudEvent(
            id=f"bench-{run}-{n}",
            source="dripstream",
            type="sms.send",
            time=now,
            subject=f"c-{n}",
            data={
                "effect_id": f"fx:bench:{run}:c-{n}:1:s1:1",
                "step_id": "s1",
                "sequence_id": "bench",
                "contact_id": f"c-{n}",
                "enrollment_id": f"bench:c-{n}:1",
                "to": f"+1646{n % 10_000_000:07d}",
                "from_line": "line-1",
                "from_number": LINES[n % len(LINES)],
                "body": "Hi! Reply STOP to opt out.",
            },
        )
        for n in range(count)
    ]


def start_fake_twilio() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "effects.fakes.twilio_server"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def stats(url: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{url}/_fake/stats") as response:
        result: dict[str, int] = json.loads(response.read())
    return result


def server_cpu_seconds(pid: int) -> float:
    """utime + stime of the fake server's process, from /proc (Linux)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Result:
    sends_per_second: float
    cpu_ms_per_send: float  # this process: processor, ledger, SDK


async def run_once(
    url: str, transport: str, count: int, concurrency: int, database_url: str | None
) -> Result:
    client = build_twilio_client(
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        api_base=url,
        transport=transport,
        pool_size=concurrency,
    )
    loop = asyncio.get_running_loop()
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    loop.set_default_executor(ThreadPoolExecutor(max_workers=concurrency))
    ledger: Ledger
    if database_url:
        ledger = PostgresLedger(database_url, f"bench-{time.time_ns()}", pool_size=16)
    else:
        ledger = InMemoryLedger()
    await ledger.open()
    processor = EffectProcessor(
        ledger=ledger,
        senders=replace(
            FakeSenders().senders(),
            sms=TwilioSmsSender(client, CallbackUrls("https://effects.example.com")),
        ),
        clock=lambda: datetime.now(UTC),
        message_limiter=LineRateLimiter(
            1_000_000, 1000, monotonic=time.monotonic, sleep=asyncio.sleep
        ),
        concurrency=concurrency,
    )
    batch = commands(count, f"{transport}-{time.time_ns()}")
    # warm up: imports inside the SDK, connections
    await processor.handle_batch(commands(50, f"warm-{time.time_ns()}"))
    started, cpu = time.perf_counter(), time.process_time()
    outcomes = await processor.handle_batch(batch)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert len(outcomes) == count
    assert all(event.type == "effect.sent" for event in outcomes)
    await ledger.close()
    await close_twilio_client(client)
    return Result(count / elapsed, cpu / count * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--transport", choices=["async", "threads", "both"], default="both")
    parser.add_argument("--database-url")
    args = parser.parse_args()
    if args.database_url:
        with psycopg.connect(args.database_url, autocommit=True) as conn:
            if conn.execute("SELECT to_regclass('effect_ledger')").fetchone() != (None,):
                conn.execute("DELETE FROM effect_ledger WHERE effect_id LIKE 'fx:bench:%'")
    process, url = start_fake_twilio()
    try:
        transports = ["async", "threads"] if args.transport == "both" else [args.transport]
        ledger = "postgresql" if args.database_url else "in-memory"
        for transport in transports:
            served_before = server_cpu_seconds(process.pid)
            result = asyncio.run(
                run_once(url, transport, args.count, args.concurrency, args.database_url)
            )
            # includes the warm-up's few requests: a slight overestimate
            server_ms = (server_cpu_seconds(process.pid) - served_before) / args.count * 1000
            print(
                f"sms.send transport={transport:<7} ledger={ledger:<10} "
                f"concurrency={args.concurrency:<4} count={args.count:<6} "
                f"{result.sends_per_second:7.0f} sends/s wall | processor "
                f"{result.cpu_ms_per_send:.3f} ms CPU/send "
                f"(= {1000 / result.cpu_ms_per_send:5.0f} sends per CPU-second) | "
                f"fake server {server_ms:.3f} ms CPU/request"
            )
        served = stats(url)
        assert served["max_accepted_per_effect"] == 1, served
        print(f"fake twilio: {served}")
    finally:
        process.terminate()
        process.wait()


if __name__ == "__main__":
    main()
