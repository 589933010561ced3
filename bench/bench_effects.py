"""SMS sends per second through one effect processor against the fake Twilio server.

The fake server runs in its own process (`python -m effects.fakes.twilio_server`), the
processor here: the real twilio SDK on the chosen transport, the in-memory ledger or
PostgreSQL (`--database-url`), bounded concurrency, a line limit high enough not to matter.
Each setup runs `--runs` times; every run prints its wall rate and the CPU it cost per send
in this process (processor, ledger client, SDK), in the fake server, and in this run's own
PostgreSQL backends (read from /proc when the server is local; the WAL writer and
checkpointer are not counted), with the load average around it.

    .venv/bin/python bench/bench_effects.py [--count 5000] [--concurrency 128] [--runs 3]
        [--transport async|aiohttp|threads|all] [--ledger memory|postgresql|both]
        [--database-url URL] [--fake-http lean|aiohttp]

For figures that go into bench/README.md, run it under `flock /tmp/dripstream-bench.lock`.
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

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
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


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


def start_fake_twilio(http: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "effects.fakes.twilio_server", "--http", http],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def stats(url: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{url}/_fake/stats") as response:
        result: dict[str, int] = json.loads(response.read())
    return result


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process, from /proc (Linux); None when it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def busy_cpu_seconds() -> float:
    """CPU time spent by everything on the machine (all cores), from /proc/stat."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


def with_application_name(url: str, name: str) -> str:
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}application_name={name}"


async def backend_pids(database_url: str, application_name: str) -> list[int]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (application_name,)
        )
        return [int(row[0]) for row in await cursor.fetchall()]


@dataclass(frozen=True)
class Result:
    sends_per_second: float
    cpu_ms_per_send: float  # this process: processor, ledger client, SDK
    database_ms_per_send: float | None  # this run's PostgreSQL backends
    elapsed: float
    busy_cores: float  # the whole machine's CPU use during the run, in cores


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
    loop.set_default_executor(ThreadPoolExecutor(max_workers=concurrency))
    ledger: Ledger
    application_name = f"bench-effects-{os.getpid()}-{time.time_ns()}"
    if database_url:
        ledger = PostgresLedger(
            with_application_name(database_url, application_name),
            application_name,
            pool_size=16,
        )
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
    # warm up: imports inside the SDK, connections, prepared statements
    await processor.handle_batch(commands(2 * concurrency, f"warm-{time.time_ns()}"))
    pids = await backend_pids(database_url, application_name) if database_url else []
    database_before = {pid: cpu_seconds(pid) for pid in pids}
    busy = busy_cpu_seconds()
    started, cpu = time.perf_counter(), time.process_time()
    outcomes = await processor.handle_batch(batch)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    busy = busy_cpu_seconds() - busy
    database_ms: float | None = None
    if database_url:
        # Connections the pool opened during the run started from zero.
        pids = await backend_pids(database_url, application_name)
        used = [(cpu_seconds(pid), database_before.get(pid) or 0.0) for pid in pids]
        if pids and all(after is not None for after, _ in used):
            database_ms = sum((after or 0.0) - before for after, before in used) / count * 1000
    assert len(outcomes) == count
    assert all(event.type == "effect.sent" for event in outcomes)
    await ledger.close()
    await close_twilio_client(client)
    return Result(count / elapsed, cpu / count * 1000, database_ms, elapsed, busy / elapsed)


def spread(values: list[float], digits: int = 0) -> str:
    low, high = min(values), max(values)
    if round(low, digits) == round(high, digits):
        return f"{low:,.{digits}f}"
    return f"{low:,.{digits}f} to {high:,.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--transport", choices=["async", "aiohttp", "threads", "all"], default="async"
    )
    parser.add_argument("--ledger", choices=["memory", "postgresql", "both"], default="both")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--fake-http", choices=["lean", "aiohttp"], default="lean")
    args = parser.parse_args()
    ledgers = ["memory", "postgresql"] if args.ledger == "both" else [args.ledger]
    if "postgresql" in ledgers and not args.database_url:
        parser.error("the PostgreSQL ledger needs --database-url (or DATABASE_URL)")
    if "postgresql" in ledgers:
        with psycopg.connect(args.database_url, autocommit=True) as conn:
            if conn.execute("SELECT to_regclass('effect_ledger')").fetchone() != (None,):
                conn.execute("DELETE FROM effect_ledger WHERE effect_id LIKE 'fx:bench:%'")
    transports = ["async", "aiohttp", "threads"] if args.transport == "all" else [args.transport]
    process, url = start_fake_twilio(args.fake_http)
    try:
        for ledger in ledgers:
            database_url = args.database_url if ledger == "postgresql" else None
            for transport in transports:
                results: list[Result] = []
                server_ms: list[float] = []
                loads: list[float] = []
                others: list[float] = []
                for _ in range(args.runs):
                    load_before = os.getloadavg()[0]
                    served_before = cpu_seconds(process.pid) or 0.0
                    result = asyncio.run(
                        run_once(url, transport, args.count, args.concurrency, database_url)
                    )
                    # includes the warm-up's requests: a slight overestimate
                    served = (cpu_seconds(process.pid) or 0.0) - served_before
                    results.append(result)
                    server_ms.append(served / args.count * 1000)
                    loads.extend([load_before, os.getloadavg()[0]])
                    database = (
                        f"{result.database_ms_per_send:.3f}"
                        if result.database_ms_per_send is not None
                        else "n/a"
                    )
                    # What the rest of the machine used meanwhile: the processor, the
                    # fake server and this run's database backends are taken out.
                    ours = (
                        (
                            result.cpu_ms_per_send
                            + server_ms[-1]
                            + (result.database_ms_per_send or 0.0)
                        )
                        * args.count
                        / 1000
                    )
                    others.append(max(0.0, result.busy_cores - ours / result.elapsed))
                    print(
                        f"sms.send transport={transport:<7} ledger={ledger:<10} "
                        f"fake={args.fake_http:<7} concurrency={args.concurrency:<4} "
                        f"count={args.count:<6} {result.sends_per_second:6.0f} sends/s wall"
                        f" | CPU ms/send: processor {result.cpu_ms_per_send:.3f}, "
                        f"fake server {server_ms[-1]:.3f}, database {database}"
                        f" | others used {others[-1]:.2f} of {os.cpu_count()} cores"
                        f" | load {load_before:.2f} -> {os.getloadavg()[0]:.2f}",
                        flush=True,
                    )
                databases = [
                    r.database_ms_per_send for r in results if r.database_ms_per_send is not None
                ]
                print(
                    f"  => {transport}/{ledger}, {args.runs} runs: "
                    f"{spread([r.sends_per_second for r in results])} sends/s wall; "
                    f"processor {spread([r.cpu_ms_per_send for r in results], 2)} ms CPU/send; "
                    f"fake server {spread(server_ms, 2)} ms; "
                    f"database {spread(databases, 2) if databases else 'n/a'} ms; "
                    f"other processes {spread(others, 2)} cores; load average {spread(loads, 2)}",
                    flush=True,
                )
        served_stats = stats(url)
        assert served_stats["max_accepted_per_effect"] == 1, served_stats
        print(f"fake twilio: {served_stats}")
    finally:
        process.terminate()
        process.wait()


if __name__ == "__main__":
    main()
