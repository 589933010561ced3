"""SMS sends per second through one effect processor against the fake Twilio server.

The fake server runs in its own process (`python -m effects.fakes.twilio_server`), the
processor here: the real twilio SDK on the chosen transport, the in-memory ledger or
PostgreSQL (`--database-url`), bounded concurrency, a line limit high enough not to matter.
Each setup runs `--runs` times; every run prints its wall rate and the CPU it cost per send
in this process (processor, ledger client, SDK), in the fake server, and in this run's own
PostgreSQL backends (read from /proc when the server is local; the WAL writer and
checkpointer are not counted), with the load average around it.

`--via kafka` measures the whole Kafka worker instead: `--count` commands published to the
`effects` topic of a fresh topic prefix, one `dripstream effects` process consuming them
(`python -m ops.cli effects`, configured through its environment like any deployment), the
fake server in its own process noting when it accepts each send. The worker is warmed up on
a few hundred commands first and stopped (SIGSTOP) while the measured ones are written, so
that it starts on a backlog with its connections open and the harness's producer does not
take its CPU. The rate is from the first to the last send the fake accepted, and from that
first send until every outcome is on the `outcomes` topic; CPU per send is counted from the
resume to the last outcome, in the worker, the fake, the run's PostgreSQL backends and the
Kafka broker. `--profile DIR` runs the worker under cProfile (one `.prof` per run).

    .venv/bin/python bench/bench_effects.py [--count 5000] [--concurrency 128] [--runs 3]
        [--transport async|aiohttp|threads|all] [--ledger memory|postgresql|both]
        [--database-url URL] [--fake-http lean|aiohttp]
        [--via processor|kafka] [--bootstrap HOST:PORT] [--partitions 3]
        [--batch-size N] [--profile DIR] [--worker-tree DIR]

For figures that go into bench/README.md, run it under `flock /tmp/dripstream-bench.lock`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import orjson
import psycopg

# aiokafka ships no type information.
from aiokafka import (  # type: ignore[import-untyped, unused-ignore]
    AIOKafkaConsumer,
    AIOKafkaProducer,
    TopicPartition,
)
from aiokafka.admin import (  # type: ignore[import-untyped, unused-ignore]
    AIOKafkaAdminClient,
    NewTopic,
)

from bench.prerequisites import run_main
from effects.fakes._lean_server import LeanRequest, LeanResponse, LeanServer
from effects.fakes.senders import FakeSenders
from effects.fakes.twilio_server import ACCOUNT_SID, AUTH_TOKEN, FakeTwilioServer
from effects.ledger import Ledger
from effects.ledger_memory import InMemoryLedger
from effects.ledger_postgres import PostgresLedger
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


@contextlib.contextmanager
def fake_checked_and_stopped(process: subprocess.Popen[str], url: str) -> Iterator[None]:
    """Stops the fake server at the end; after a run that went through, checks it accepted
    each effect id at most once."""
    try:
        yield
        served = stats(url)
        assert served["max_accepted_per_effect"] == 1, served
        print(f"fake twilio: {served}")
    finally:
        process.terminate()
        process.wait()


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


# -- the Kafka worker (`--via kafka`) ------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
KAFKA_TOPICS = ("effects", "contacts", "outcomes", "dlq")


class TimedFakeTwilio(FakeTwilioServer):
    """The fake, also noting when it accepted each request (CLOCK_MONOTONIC, which this
    process shares with the harness), so a run is timed from its first to its last send."""

    def __init__(self) -> None:
        super().__init__(keep_requests=False)
        self.accepted_ns: list[int] = []

    def respond(self, received: Any) -> LeanResponse:
        answer = super().respond(received)
        if answer.status == 201:
            self.accepted_ns.append(time.monotonic_ns())
        return answer

    def handle_lean(self, request: LeanRequest) -> LeanResponse:
        path, _, query = request.target.partition("?")
        if path == "/_bench/window":
            times = self.accepted_ns[int(parse_qs(query).get("skip", ["0"])[0]) :]
            window = {"count": len(times), "first_ns": times[:1], "last_ns": times[-1:]}
            return LeanResponse(200, orjson.dumps(window))
        return super().handle_lean(request)


async def serve_timed_fake() -> None:
    server = await LeanServer(TimedFakeTwilio().handle_lean).start()
    print(server.url, flush=True)
    await asyncio.Event().wait()


def start_timed_fake() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve-timed-fake"], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def fetch_json(url: str) -> Any:
    with urllib.request.urlopen(url) as response:
        return json.loads(response.read())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kafka_broker_pid() -> int | None:
    """The local broker's process (kafka.Kafka), when there is one, to count its CPU."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"kafka.Kafka" in (entry / "cmdline").read_bytes():
                    return int(entry.name)
            except OSError:
                continue
    return None


@dataclass(frozen=True)
class KafkaResult:
    sends_per_second: float  # first to last send the fake accepted
    outcomes_per_second: float  # first send to the last outcome on the topic
    worker_ms: float  # CPU per send, resume to the last outcome
    server_ms: float
    database_ms: float | None
    kafka_ms: float | None
    others_cores: float
    load: tuple[float, float]


async def produce(bootstrap: str, topic: str, events: list[CloudEvent]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=20
    )
    await producer.start()
    try:
        futures = [
            await producer.send(topic, event.encode(), key=(event.subject or "").encode())
            for event in events
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def wait_for_records(
    consumer: Any, partitions: list[Any], total: int, worker: subprocess.Popen[bytes]
) -> float:
    """Poll the end offsets until `total` records are there; the monotonic time it saw them."""
    while True:
        ends = await consumer.end_offsets(partitions)
        if sum(ends.values()) >= total:
            return time.monotonic()
        if worker.poll() is not None:
            raise RuntimeError(f"the effects worker exited ({worker.returncode})")
        await asyncio.sleep(0.01)


async def verify_kafka_run(
    bootstrap: str, prefix: str, group: str, expected_ids: set[str], partitions: int
) -> None:
    """Every command has one effect.sent outcome, nothing was dead-lettered, and the group
    committed every command (checked after the timed part)."""
    consumer = AIOKafkaConsumer(
        prefix + "outcomes",
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        seen: dict[str, str] = {}
        async with asyncio.timeout(60):
            while len(seen) < len(expected_ids):
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for record in records:
                        outcome = orjson.loads(record.value)
                        seen[outcome["data"]["effect_id"]] = outcome["type"]
        assert set(seen) == expected_ids, "outcomes for other effects than sent"
        assert set(seen.values()) == {"effect.sent"}, set(seen.values())
        dlq = [TopicPartition(prefix + "dlq", p) for p in range(partitions)]
        assert sum((await consumer.end_offsets(dlq)).values()) == 0, "dead letters"
    finally:
        await consumer.stop()
    check = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await check.start()
    try:
        effects = [TopicPartition(prefix + "effects", p) for p in range(partitions)]
        ends = await check.end_offsets(effects)
        async with asyncio.timeout(30):
            while [await check.committed(tp) for tp in effects] != [ends[tp] for tp in effects]:
                await asyncio.sleep(0.1)
    finally:
        await check.stop()


async def run_kafka_once(
    url: str,
    fake_pid: int,
    transport: str,
    database_url: str | None,
    args: argparse.Namespace,
    run: int,
) -> KafkaResult:
    bootstrap: str = args.bootstrap
    prefix = f"bench.fx{time.time_ns():x}."
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    topics = [prefix + name for name in KAFKA_TOPICS]
    await admin.create_topics([NewTopic(name, args.partitions, 1) for name in topics])
    application_name = f"bench-effects-kafka-{os.getpid()}-{time.time_ns()}"
    environment = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DRIPSTREAM_TOPIC_PREFIX": prefix,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_API_BASE": url,
        "EFFECTS_TWILIO_TRANSPORT": transport,
        "EFFECTS_CONCURRENCY": str(args.concurrency),
        # four lines, a limit that does not bind
        "EFFECTS_LINE_RATE": "1000000",
        "EFFECTS_LINE_BURST": "1000",
        "EFFECTS_HTTP_PORT": str(free_port()),
        "EFFECTS_PUBLIC_URL": "https://effects.example.com",
    }
    environment.pop("DATABASE_URL", None)
    if database_url:
        environment["DATABASE_URL"] = with_application_name(database_url, application_name)
        # A ledger serves one topic prefix (effects/pg_schema.py): each run, on topics of
        # its own, has a schema of its own.
        environment["EFFECTS_SCHEMA"] = prefix.rstrip(".").replace(".", "_")
    if args.batch_size:
        environment["EFFECTS_BATCH_SIZE"] = str(args.batch_size)
    if args.worker_tree:
        environment["PYTHONPATH"] = str(args.worker_tree)
    command = [sys.executable, "-m", "ops.cli", "effects"]
    if not database_url:
        command.append("--memory-ledger")  # the in-memory run, on purpose
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        profile = args.profile / f"effects-worker-{run}.prof"
        command = [sys.executable, "-m", "cProfile", "-o", str(profile), *command[1:]]
    outcomes = [TopicPartition(prefix + "outcomes", p) for p in range(args.partitions)]
    stamp = time.time_ns()
    warm = commands(2 * args.concurrency, f"warm-{stamp}")
    batch = commands(args.count, f"kafka-{stamp}")
    watcher = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    # closed in the `finally` below, after the worker has stopped writing to it
    log = tempfile.NamedTemporaryFile(prefix="bench-effects-worker-", suffix=".log")  # noqa: SIM115
    worker = subprocess.Popen(command, cwd=args.worker_tree or ROOT, env=environment, stderr=log)
    try:
        await watcher.start()
        # warm up: imports, the group's join, connections, prepared statements
        await produce(bootstrap, prefix + "effects", warm)
        await wait_for_records(watcher, outcomes, len(warm), worker)
        os.kill(worker.pid, signal.SIGSTOP)
        await produce(bootstrap, prefix + "effects", batch)
        skip = stats(url)["accepted"]
        broker = kafka_broker_pid()
        pids = await backend_pids(database_url, application_name) if database_url else []
        database_before = {pid: cpu_seconds(pid) for pid in pids}
        before = {
            "worker": cpu_seconds(worker.pid),
            "fake": cpu_seconds(fake_pid),
            "kafka": cpu_seconds(broker) if broker else None,
        }
        load_before, busy = os.getloadavg()[0], busy_cpu_seconds()
        resumed = time.monotonic()
        os.kill(worker.pid, signal.SIGCONT)
        done = await wait_for_records(watcher, outcomes, len(warm) + len(batch), worker)
        after = {
            "worker": cpu_seconds(worker.pid),
            "fake": cpu_seconds(fake_pid),
            "kafka": cpu_seconds(broker) if broker else None,
        }
        busy = busy_cpu_seconds() - busy
        load_after = os.getloadavg()[0]
        database_ms: float | None = None
        if database_url:
            pids = await backend_pids(database_url, application_name)
            used = [(cpu_seconds(pid), database_before.get(pid) or 0.0) for pid in pids]
            if pids and all(cpu is not None for cpu, _ in used):
                database_ms = sum((cpu or 0.0) - was for cpu, was in used) / args.count * 1000
        window = fetch_json(f"{url}/_bench/window?skip={skip}")
        assert window["count"] == args.count, window
        first, last = window["first_ns"][0] / 1e9, window["last_ns"][0] / 1e9
        await verify_kafka_run(
            bootstrap,
            prefix,
            prefix + "effects",  # the worker's default group, `<prefix>effects`
            {event.data["effect_id"] for event in [*warm, *batch]},
            args.partitions,
        )
    except BaseException:
        log.seek(0)
        print(log.read()[-4000:].decode(errors="replace"), file=sys.stderr)
        raise
    finally:
        if worker.poll() is None:
            os.kill(worker.pid, signal.SIGCONT)
            worker.terminate()
            worker.wait(60)
        log.close()
        await watcher.stop()
        await admin.delete_topics(topics)
        await admin.close()

    def per_send(name: str) -> float | None:
        was, now = before[name], after[name]
        return None if was is None or now is None else (now - was) / args.count * 1000

    elapsed = done - resumed
    worker_ms, server_ms, kafka_ms = per_send("worker"), per_send("fake"), per_send("kafka")
    assert worker_ms is not None
    assert server_ms is not None
    ours = (worker_ms + server_ms + (database_ms or 0.0) + (kafka_ms or 0.0)) * args.count / 1000
    return KafkaResult(
        sends_per_second=args.count / (last - first),
        outcomes_per_second=args.count / (done - first),
        worker_ms=worker_ms,
        server_ms=server_ms,
        database_ms=database_ms,
        kafka_ms=kafka_ms,
        others_cores=max(0.0, (busy - ours) / elapsed),
        load=(load_before, load_after),
    )


def spread(values: list[float], digits: int = 0) -> str:
    low, high = min(values), max(values)
    if round(low, digits) == round(high, digits):
        return f"{low:,.{digits}f}"
    return f"{low:,.{digits}f} to {high:,.{digits}f}"


def run_kafka(args: argparse.Namespace, ledgers: list[str], transports: list[str]) -> None:
    process, url = start_timed_fake()
    tree = f" from {args.worker_tree}" if args.worker_tree else ""
    with fake_checked_and_stopped(process, url):
        for ledger in ledgers:
            database_url = args.database_url if ledger == "postgresql" else None
            for transport in transports:
                results: list[KafkaResult] = []
                for run in range(args.runs):
                    result = asyncio.run(
                        run_kafka_once(url, process.pid, transport, database_url, args, run)
                    )
                    results.append(result)
                    print(
                        f"kafka worker{tree} transport={transport:<7} ledger={ledger:<10} "
                        f"concurrency={args.concurrency:<4} count={args.count:<6} "
                        f"{result.sends_per_second:6.0f} sends/s (first to last send), "
                        f"{result.outcomes_per_second:6.0f}/s to the last outcome"
                        f" | CPU ms/send: worker {result.worker_ms:.3f}, "
                        f"fake server {result.server_ms:.3f}, "
                        f"database {optional(result.database_ms)}, "
                        f"kafka {optional(result.kafka_ms)}"
                        f" | others used {result.others_cores:.2f} of {os.cpu_count()} cores"
                        f" | load {result.load[0]:.2f} -> {result.load[1]:.2f}",
                        flush=True,
                    )
                databases = [r.database_ms for r in results if r.database_ms is not None]
                brokers = [r.kafka_ms for r in results if r.kafka_ms is not None]
                print(
                    f"  => kafka worker{tree}, {transport}/{ledger}, {args.runs} runs: "
                    f"{spread([r.sends_per_second for r in results])} sends/s "
                    f"({spread([r.outcomes_per_second for r in results])} to the last outcome); "
                    f"worker {spread([r.worker_ms for r in results], 2)} ms CPU/send; "
                    f"fake server {spread([r.server_ms for r in results], 2)} ms; "
                    f"database {spread(databases, 2) if databases else 'n/a'} ms; "
                    f"kafka {spread(brokers, 2) if brokers else 'n/a'} ms; "
                    f"other processes {spread([r.others_cores for r in results], 2)} cores; "
                    f"load average {spread([v for r in results for v in r.load], 2)}",
                    flush=True,
                )


def optional(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


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
    parser.add_argument(
        "--via",
        choices=["processor", "kafka"],
        default="processor",
        help="the processor in this process, or the `dripstream effects` worker on Kafka",
    )
    parser.add_argument(
        "--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    )
    parser.add_argument("--partitions", type=int, default=3, help="per topic (--via kafka)")
    parser.add_argument("--batch-size", type=int, help="the worker's EFFECTS_BATCH_SIZE")
    parser.add_argument("--profile", type=Path, help="cProfile the worker into this folder")
    parser.add_argument(
        "--worker-tree",
        type=Path,
        help="run the worker from this source tree (e.g. `git archive` of an older commit)",
    )
    parser.add_argument("--serve-timed-fake", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_timed_fake:
        asyncio.run(serve_timed_fake())
        return
    ledgers = ["memory", "postgresql"] if args.ledger == "both" else [args.ledger]
    if "postgresql" in ledgers and not args.database_url:
        parser.error("the PostgreSQL ledger needs --database-url (or DATABASE_URL)")
    if args.via == "kafka" and args.fake_http != "lean":
        parser.error("--via kafka times the sends in the lean fake server only")
    if "postgresql" in ledgers:
        with psycopg.connect(args.database_url, autocommit=True) as conn:
            if conn.execute("SELECT to_regclass('effect_ledger')").fetchone() != (None,):
                conn.execute("DELETE FROM effect_ledger WHERE effect_id LIKE 'fx:bench:%'")
    transports = ["async", "aiohttp", "threads"] if args.transport == "all" else [args.transport]
    if args.via == "kafka":
        run_kafka(args, ledgers, transports)
        return
    process, url = start_fake_twilio(args.fake_http)
    with fake_checked_and_stopped(process, url):
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


if __name__ == "__main__":
    raise SystemExit(run_main(main))
