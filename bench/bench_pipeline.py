"""The pipeline benchmark: `dripstream worker` on the real Kafka broker and PostgreSQL.

Three measurements, each on a fresh database (CREATE DATABASE, DROP after) and a fresh
topic prefix (its topics are deleted after):

1. throughput — a synthetic history (tests/integration/history.py) is applied and published
   with `dripstream produce` (watermarks included), then one `worker --clock event` starts;
   the time from its start until the decisions and effects `dripstream replay` makes of the
   same file are all on Kafka (read_committed). The floor is a bare aiokafka consumer
   (no group, read_committed) reading the input topics from the beginning.
2. latency — a `worker --clock wall`, a sequence whose trigger is a tag and whose first step
   is `send_sms` with no delay; contacts are created first (not timed), then tags are
   produced at a steady rate, each carrying its produce wall time in its id; the latency is
   produce -> `sms.send` visible on `effects` (and -> `enrollment.enrolled` on `decisions`).
3. timers — `--clock event`: N contacts created and tagged at 12:00:00 into a sequence whose
   step is due 2 minutes later, one marker input at 12:05:00; the wall time from the
   marker's decision being visible until all N timer `sms.send` are on `effects`.

    .venv/bin/python -m bench.bench_pipeline --events 20000 --timers 10000 --rate-seconds 20

It prints a Markdown table; worker logs and the table go to bench/out/ (ignored by git).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import psycopg
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # type: ignore[import-untyped]
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]
from psycopg import sql

from bench.prerequisites import run_main
from tests.integration.history import write_history

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out"
INPUTS = ("contacts", "calls", "messages", "appointments", "intake", "commands")
OUTPUTS = ("decisions", "effects", "outcomes", "dlq", "relay-position")
WATCH_WAIT_MS = {"ms": 20}  # the benchmark's readers' fetch wait; --watch-wait-ms
DEFAULT_DB = "postgresql://dripstream_test:dripstream_test@127.0.0.1:55432/dripstream_test"

ACCOUNT: dict[str, Any] = {
    "timezone": "UTC",
    "opt_out_phrase": "Reply STOP to opt out.",
    "lines": {"line-1": "+13125550000"},
}


def _sequence(sid: str, tag: str, delay: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": sid,
        "name": sid.title(),
        "process_on": "every_day",
        "outbound_line": "line-1",
        "steps": [{"id": "hi", "type": "send_sms", "delay": delay, "text": "Hi [FirstName]"}],
        "triggers": [{"type": "contact_tagged", "tags": [tag]}],
    }


# ---- machine ------------------------------------------------------------------------------


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def _cpu_ticks(pid: int | None = None) -> float:
    """Jiffies used by a process and the processes it started (the relay, more workers)
    while they run (utime+stime), or by the whole machine (busy)."""
    if pid is not None:
        stats: dict[int, list[str]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        tree, grew = {pid}, True
        while grew:
            more = {p for p, f in stats.items() if int(f[1]) in tree} - tree
            tree |= more
            grew = bool(more)
        return float(sum(int(stats[p][11]) + int(stats[p][12]) for p in tree if p in stats))
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return float(sum(values) - values[3] - values[4])  # minus idle and iowait


@dataclass
class CpuMeter:
    pid: int | None
    started: float = field(default_factory=time.monotonic)
    ticks: float = 0.0
    machine: float = 0.0

    def __post_init__(self) -> None:
        self.ticks, self.machine = _cpu_ticks(self.pid), _cpu_ticks()

    def read(self) -> tuple[float, float]:
        """(process tree CPU %, machine busy % of all cores) since the start. A process
        tree's share misses the time of a child that ended before the reading."""
        hz = os.sysconf("SC_CLK_TCK")
        wall = max(1e-6, time.monotonic() - self.started)
        own = (_cpu_ticks(self.pid) - self.ticks) / hz / wall * 100
        busy = (_cpu_ticks() - self.machine) / hz / wall / (os.cpu_count() or 1) * 100
        return own, busy


# ---- fixtures: database, topics, worker ---------------------------------------------------


@contextlib.contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))
    finally:
        # An autovacuum worker on the new database cannot be ended by this role: retry.
        for attempt in range(10):
            try:
                with psycopg.connect(admin_url, autocommit=True) as conn:
                    conn.execute(
                        sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name))
                    )
                break
            except psycopg.Error as error:
                if attempt == 9:
                    print(f"could not drop database {name}: {error}", file=sys.stderr)
                time.sleep(2)


@contextlib.asynccontextmanager
async def fresh_topics(bootstrap: str, partitions: int) -> Any:
    prefix = f"b{uuid.uuid4().hex[:10]}."
    names = [prefix + t for t in INPUTS + OUTPUTS]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names]
        )
        yield prefix
    finally:
        with contextlib.suppress(Exception):
            await admin.delete_topics(names)
        await admin.close()


def cli(*args: str, timeout: float = 600) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ops.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"dripstream {args[0]} failed: {done.stderr[-2000:]}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def metric(port: int, name: str) -> float | None:
    """One sample of the worker's Prometheus metric (its `_total` for a counter)."""
    url = f"http://127.0.0.1:{port}/metrics"
    with (
        contextlib.suppress(OSError, ValueError),
        urllib.request.urlopen(url, timeout=2) as answer,
    ):
        for line in answer.read().decode().splitlines():
            if line.startswith((name + " ", name + "_total ")):
                return float(line.split()[1])
    return None


def start_worker(
    bootstrap: str,
    database_url: str,
    prefix: str,
    clock: str,
    name: str,
    metrics_port: int | None = None,
    processes: int = 1,
) -> subprocess.Popen[bytes]:
    OUT.mkdir(parents=True, exist_ok=True)
    log = open(OUT / f"worker-{name}.log", "wb")  # noqa: SIM115 - lives with the process
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ops.cli",
            "worker",
            "--clock",
            clock,
            "--bootstrap",
            bootstrap,
            "--database-url",
            database_url,
            "--topic-prefix",
            prefix,
            *(("--metrics-port", str(metrics_port)) if metrics_port else ()),
            *(("--processes", str(processes)) if processes > 1 else ()),
        ],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def consumer(bootstrap: str, *topics: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        enable_auto_commit=False,
        group_id=None,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        # A read_committed fetch parked at the broker is not answered when a transaction
        # commits, only when its wait runs out (measured: the default 500 ms adds about
        # 500 ms to p50): a reader that wants decisions promptly asks for a short wait.
        fetch_max_wait_ms=WATCH_WAIT_MS["ms"],
    )


async def watch(
    bootstrap: str,
    topics: tuple[str, ...],
    on_record: Callable[[str, Any, float], bool | None],
    done: Callable[[], bool],
    *,
    limit: float,
    quiet: float | None = None,
    started: asyncio.Event | None = None,
) -> str:
    """Read committed records of `topics`, calling on_record(topic, record, wall time) until
    done(), a quiet spell of `quiet` seconds (after something came) or `limit` seconds."""
    reader = consumer(bootstrap, *topics)
    await reader.start()
    if started is not None:
        started.set()
    begin = last = time.monotonic()
    seen = False
    try:
        while True:
            batch = await reader.getmany(timeout_ms=100, max_records=5000)
            now_wall = time.time()
            for tp, records in batch.items():
                for record in records:
                    if on_record(tp.topic, record, now_wall) is not False:
                        seen = True
                        last = time.monotonic()
            if done():
                return "complete"
            if quiet is not None and seen and time.monotonic() - last > quiet:
                return f"quiet {quiet:.0f}s"
            if time.monotonic() - begin > limit:
                return f"time limit {limit:.0f}s"
    finally:
        await reader.stop()


async def group_caught_up(bootstrap: str, group: str, topics: list[str], limit: float) -> bool:
    """Wait (bounded) until the consumer group has committed every input topic's end."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    probe = consumer(bootstrap)
    await admin.start()
    await probe.start()
    try:
        begin = time.monotonic()
        while time.monotonic() - begin < limit:
            committed = await admin.list_consumer_group_offsets(group)
            parts = [tp for tp in committed if tp.topic in topics]
            ends = await probe.end_offsets(parts) if parts else {}
            # Watermarks and engine-made records are not recorded one by one: within 2 of
            # the end counts as caught up only when nothing moves any more.
            if parts and all(committed[tp].offset >= ends[tp] for tp in parts):
                return True
            await asyncio.sleep(0.5)
        return False
    finally:
        await probe.stop()
        await admin.close()


def store_stats(database_url: str) -> dict[str, Any]:
    """What the worker recorded: outbox rows per topic, inputs, positions (a diagnostic)."""
    stats: dict[str, Any] = {}
    with contextlib.suppress(Exception), psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT topic, count(*) FROM dripstream_outbox GROUP BY topic ORDER BY topic"
        ).fetchall()
        stats["outbox"] = {str(t): int(c) for t, c in rows}
        total = conn.execute("SELECT coalesce(sum(position + 1), 0) FROM dripstream_positions")
        stats["positions_sum"] = int(total.fetchone()[0])  # type: ignore[index]
    return stats


async def prime_definitions(
    args: argparse.Namespace, database_url: str, prefix: str, definitions: Path, sequences: int
) -> float:
    """Apply the definitions with a worker running and wait until it has recorded them
    (`sequence.defined` on decisions), then stop it. Applied together with a backlog, the
    definition on `commands` partition p is recorded only when group p's turn comes, and
    groups before it decide their inputs without it (see the report): the timed worker
    must start with the definitions in the store."""
    began = time.perf_counter()
    worker = start_worker(args.bootstrap, database_url, prefix, "event", "prime")
    defined = {"n": 0}

    def on_record(_topic: str, record: Any, _now: float) -> None:
        if orjson.loads(record.value)["type"] == "sequence.defined":
            defined["n"] += 1

    try:
        cli(
            "sequences",
            "apply",
            str(definitions),
            "--bootstrap",
            args.bootstrap,
            "--topic-prefix",
            prefix,
        )
        await watch(
            args.bootstrap,
            (prefix + "decisions",),
            on_record,
            lambda: defined["n"] >= sequences,
            limit=min(args.limit, 120),
        )
    finally:
        stop(worker)
    if defined["n"] < sequences:
        raise RuntimeError(f"the worker recorded {defined['n']} of {sequences} definitions")
    return time.perf_counter() - began


# ---- 1. throughput ------------------------------------------------------------------------


def _replay_counts(definitions: Path, history: Path, folder: Path) -> dict[str, int]:
    from schemas.registry import topic_for  # noqa: PLC0415

    out = folder / "replay.jsonl"
    # --leave-windows-open: the worker's minute goes on, so it never sends the last notices.
    cli(
        "replay",
        "--sequences",
        str(definitions),
        "--events",
        str(history),
        "--out",
        str(out),
        "--leave-windows-open",
    )
    counts: dict[str, int] = {}
    for line in out.read_bytes().splitlines():
        if not line.strip():
            continue
        kind = orjson.loads(line)["type"]
        topic = topic_for(kind)
        counts[topic] = counts.get(topic, 0) + 1
    return counts


async def floor_read(bootstrap: str, prefix: str, limit: float) -> tuple[int, float]:
    reader = consumer(bootstrap, *(prefix + t for t in INPUTS))
    await reader.start()
    try:
        parts = list(reader.assignment())
        while not parts:
            await asyncio.sleep(0.05)
            parts = list(reader.assignment())
        ends = await reader.end_offsets(parts)
        total = sum(ends.values())
        began = time.perf_counter()
        count = 0
        while count < total and time.perf_counter() - began < limit:
            batch = await reader.getmany(timeout_ms=200, max_records=10000)
            for records in batch.values():
                for record in records:
                    orjson.loads(record.value)  # the floor decodes JSON too, as the worker must
                    count += 1
        return count, time.perf_counter() - began
    finally:
        await reader.stop()


async def throughput(args: argparse.Namespace, database_url: str) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    definitions, history = write_history(folder, args.events, max(10, args.events // 10))
    expected = _replay_counts(definitions, history, folder)
    want = {t: expected.get(t, 0) for t in ("decisions", "effects")}
    async with fresh_topics(args.bootstrap, args.partitions) as prefix:
        flags = ("--bootstrap", args.bootstrap, "--topic-prefix", prefix)
        await prime_definitions(args, database_url, prefix, definitions, 2)
        t0 = time.perf_counter()
        cli("produce", str(history), *flags, timeout=args.limit)
        produce_s = time.perf_counter() - t0
        floor_n, floor_s = await floor_read(args.bootstrap, prefix, args.limit)
        load_before = uptime()
        got = {"decisions": 0, "effects": 0}
        last_seen = {"t": 0.0}
        first_seen = {"t": 0.0}

        def on_record(topic: str, record: Any, now: float) -> bool:
            name = topic[len(prefix) :]
            got[name] += 1
            if b"sequence.defined" in (record.value or b""):
                return False  # recorded before the timed worker started
            last_seen["t"] = now
            if not first_seen["t"]:
                first_seen["t"] = now
            return True

        ready = asyncio.Event()
        watcher = asyncio.create_task(
            watch(
                args.bootstrap,
                (prefix + "decisions", prefix + "effects"),
                on_record,
                lambda: all(got[t] >= want[t] for t in want),
                limit=args.limit,
                quiet=args.quiet,
                started=ready,
            )
        )
        await ready.wait()
        start_wall = time.time()
        port = free_port()
        worker = start_worker(
            args.bootstrap, database_url, prefix, "event", "throughput", port, args.processes
        )
        meter = CpuMeter(worker.pid)
        try:
            ended = await watcher
            worker_cpu, machine_busy = meter.read()
            stats = store_stats(database_url)
            stats["events_in"] = metric(port, "dripstream_events_in")
        finally:
            stop(worker)
    elapsed = max(1e-6, last_seen["t"] - start_wall)
    rate = args.events / elapsed
    floor_rate = floor_n / floor_s if floor_s else 0.0
    return {
        "events": args.events,
        "processes": args.processes,
        "produce_s": produce_s,
        "expected": want,
        "got": dict(got),
        "ended": ended,
        "startup_s": (first_seen["t"] - start_wall) if first_seen["t"] else None,
        "elapsed_s": elapsed,
        "worker_rate": rate,
        "floor_records": floor_n,
        "floor_s": floor_s,
        "floor_rate": floor_rate,
        "ratio": rate / floor_rate if floor_rate else 0.0,
        "store": stats,
        "worker_cpu": worker_cpu,
        "machine_busy": machine_busy,
        "load_before": load_before,
        "load_after": uptime(),
    }


# ---- 2. latency ---------------------------------------------------------------------------


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _slice_p50(pairs: list[tuple[float, float]], start: float, end: float) -> float:
    ordered = sorted(pairs)
    part = ordered[int(start * len(ordered)) : max(1, int(end * len(ordered)))]
    return _percentile([latency for _, latency in part], 0.5)


def _event(eid: str, kind: str, moment: str, contact: str, **data: Any) -> bytes:
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": eid,
            "source": "bench",
            "type": kind,
            "time": moment,
            "subject": contact,
            "data": {"contact_id": contact, **data},
        }
    )


async def latency(args: argparse.Namespace, database_url: str) -> dict[str, Any]:
    total = int(args.rate * args.rate_seconds)
    folder = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    definitions = folder / "latency.yaml"
    document = {"account": ACCOUNT, "sequences": [_sequence("now", "lat", {"kind": "none"})]}
    definitions.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    async with fresh_topics(args.bootstrap, args.partitions) as prefix:
        flags = ("--bootstrap", args.bootstrap, "--topic-prefix", prefix)
        port = free_port()
        worker = start_worker(args.bootstrap, database_url, prefix, "wall", "latency", port)
        producer = AIOKafkaProducer(
            bootstrap_servers=args.bootstrap, enable_idempotence=True, linger_ms=2
        )
        await producer.start()
        try:
            cli("sequences", "apply", str(definitions), *flags)
            # The contacts first, untimed: every timed tag then makes an sms.send.
            now_text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            futures = [
                await producer.send(
                    prefix + "contacts",
                    _event(
                        f"mk-{n}",
                        "contact.created",
                        now_text,
                        f"l-{n}",
                        first_name=f"F{n}",
                        phone=f"+1312{n % 10_000_000:07d}",
                    ),
                    key=f"l-{n}".encode(),
                )
                for n in range(total)
            ]
            for future in futures:
                await future
            warmed = await group_caught_up(
                args.bootstrap, f"{prefix}engine", [prefix + "contacts"], args.limit
            )
            sent: dict[str, float] = {}
            sms: list[float] = []
            by_send: list[tuple[float, float]] = []  # (produced at, latency)
            relay = {"position": 0}
            enrolled: list[float] = []

            def on_record(topic: str, record: Any, now: float) -> None:
                event = orjson.loads(record.value)
                if topic.endswith("relay-position"):
                    relay["position"] = max(relay["position"], int(event["position"]))
                elif event["type"] == "sms.send":
                    produced = sent.get(event["data"].get("contact_id") or record.key.decode())
                    if produced is not None:
                        sms.append(now - produced)
                        by_send.append((produced, now - produced))
                elif event["type"] == "enrollment.enrolled" and event["id"].startswith("lat-"):
                    # <input id>@<source>/<n>, the input id being lat-<i>-<ns produced>
                    produced_ns = int(event["id"].split("@")[0].split("-")[2])
                    enrolled.append(now - produced_ns / 1e9)

            ready = asyncio.Event()
            watcher = asyncio.create_task(
                watch(
                    args.bootstrap,
                    (prefix + "decisions", prefix + "effects", prefix + "relay-position"),
                    on_record,
                    lambda: len(sms) >= total and len(enrolled) >= total,
                    limit=args.rate_seconds + args.limit,
                    started=ready,
                )
            )
            await ready.wait()
            load_before = uptime()
            decided_before = metric(port, "dripstream_events_in") or 0.0
            meter = CpuMeter(worker.pid)
            began = time.perf_counter()
            tick = 0.01
            per_tick = max(1, round(args.rate * tick))
            n = 0
            pending = []
            while n < total and time.perf_counter() - began < args.rate_seconds * 2:
                target = began + (n / args.rate)
                delay = target - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                for _ in range(min(per_tick, total - n)):
                    contact = f"l-{n}"
                    stamp = time.time()
                    sent[contact] = stamp
                    value = _event(
                        f"lat-{n}-{int(stamp * 1e9)}",
                        "contact.tag_added",
                        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp)),
                        contact,
                        tag="lat",
                    )
                    pending.append(
                        await producer.send(prefix + "contacts", value, key=contact.encode())
                    )
                    n += 1
            produce_s = time.perf_counter() - began
            for future in pending:
                await future
            # Where the work stood when the producing ended: decided by the worker (its
            # events_in metric), recorded in the outbox, published by the relay.
            decided = (metric(port, "dripstream_events_in") or 0.0) - decided_before
            with psycopg.connect(database_url) as conn:
                row = conn.execute("SELECT coalesce(max(id), 0) FROM dripstream_outbox").fetchone()
            outbox_rows_now = int(row[0]) if row else 0
            relay_now = relay["position"]
            worker_cpu, machine_busy = meter.read()
            ended = await watcher
        finally:
            await producer.stop()
            stop(worker)
    return {
        "sent": n,
        "produce_s": produce_s,
        "achieved_rate": n / produce_s if produce_s else 0.0,
        "warmed": warmed,
        "decided_at_end": decided,
        "outbox_at_end": outbox_rows_now,
        "relayed_at_end": relay_now,
        "ended": ended,
        "sms_seen": len(sms),
        "enrolled_seen": len(enrolled),
        "sms_p50": _percentile(sms, 0.5) * 1000,
        "sms_p99": _percentile(sms, 0.99) * 1000,
        "sms_max": max(sms, default=float("nan")) * 1000,
        "sms_mean": (statistics.fmean(sms) * 1000) if sms else float("nan"),
        # Latency of the first and the last tenth of the sends: a backlog that grows shows
        # as a rising latency, a fixed cost as a flat one.
        "sms_first_p50": _slice_p50(by_send, 0.0, 0.1) * 1000,
        "sms_last_p50": _slice_p50(by_send, 0.9, 1.0) * 1000,
        "dec_p50": _percentile(enrolled, 0.5) * 1000,
        "dec_p99": _percentile(enrolled, 0.99) * 1000,
        "worker_cpu": worker_cpu,
        "machine_busy": machine_busy,
        "load_before": load_before,
        "load_after": uptime(),
    }


# ---- 3. timers ----------------------------------------------------------------------------


async def timers(args: argparse.Namespace, database_url: str) -> dict[str, Any]:
    count = args.timers
    folder = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    definitions = folder / "timers.yaml"
    document = {
        "account": ACCOUNT,
        "sequences": [
            _sequence("later", "go", {"kind": "default", "amount": 2, "unit": "minutes"}),
            _sequence("mark", "mark", {"kind": "none"}),
        ],
    }
    definitions.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    noon = "2027-01-04T12:00:00Z"
    lines = []
    for n in range(count):
        contact = f"c-{n}"
        lines.append(_event(f"mk-{n}", "contact.created", noon, contact, phone=f"+1312{n:07d}"))
        lines.append(_event(f"go-{n}", "contact.tag_added", noon, contact, tag="go"))
    lines.append(_event("end", "contact.tag_added", "2027-01-04T12:05:00Z", "end", tag="mark"))
    history = folder / "timers.jsonl"
    history.write_bytes(b"\n".join(lines) + b"\n")
    async with fresh_topics(args.bootstrap, args.partitions) as prefix:
        flags = ("--bootstrap", args.bootstrap, "--topic-prefix", prefix)
        await prime_definitions(args, database_url, prefix, definitions, 2)
        cli("produce", str(history), *flags, timeout=args.limit)
        marks: dict[str, float] = {}
        sms = {"n": 0, "early": 0, "last": 0.0, "first": 0.0}

        def on_record(_topic: str, record: Any, now: float) -> None:
            event = orjson.loads(record.value)
            if event["type"] == "sms.send":
                sms["n"] += 1
                sms["last"] = now
                if not sms["first"]:
                    sms["first"] = now
                if "end" not in marks:
                    sms["early"] += 1
            elif event["type"] == "enrollment.enrolled" and event["id"].startswith("end@"):
                # (an output's id: `<input id>@<input source>@<input time>/<n>`)
                marks["end"] = now
            elif event["type"] == "enrollment.enrolled" and "first" not in marks:
                marks["first"] = now

        ready = asyncio.Event()
        watcher = asyncio.create_task(
            watch(
                args.bootstrap,
                (prefix + "decisions", prefix + "effects"),
                on_record,
                lambda: sms["n"] >= count and "end" in marks,
                limit=args.limit,
                quiet=args.quiet,
                started=ready,
            )
        )
        await ready.wait()
        load_before = uptime()
        start_wall = time.time()
        worker = start_worker(args.bootstrap, database_url, prefix, "event", "timers")
        meter = CpuMeter(worker.pid)
        try:
            ended = await watcher
            worker_cpu, machine_busy = meter.read()
            stats = store_stats(database_url)
        finally:
            stop(worker)
    end = marks.get("end")
    return {
        "timers": count,
        "inputs": len(lines),
        "ended": ended,
        "sms": sms["n"],
        "early": sms["early"],
        "to_marker_s": (end - start_wall) if end else None,
        "fire_s": (sms["last"] - end) if end and sms["n"] else None,
        "fire_from_first_s": (sms["last"] - min(sms["first"], end or sms["first"]))
        if sms["n"]
        else None,
        "store": stats,
        "worker_cpu": worker_cpu,
        "machine_busy": machine_busy,
        "load_before": load_before,
        "load_after": uptime(),
    }


# ---- report -------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    rows = ["| measurement | figure | target | met |", "|---|---|---|---|"]
    if t := results.get("throughput"):
        complete = t["got"]["decisions"] >= t["expected"]["decisions"] and (
            t["got"]["effects"] >= t["expected"]["effects"]
        )
        rows += [
            f"| throughput: input events | {_fmt(t['events'])} (produce took "
            f"{_fmt(t['produce_s'])} s) | | |",
            f"| throughput: decisions / effects on Kafka vs replay | "
            f"{_fmt(t['got']['decisions'])}/{_fmt(t['expected']['decisions'])} decisions, "
            f"{_fmt(t['got']['effects'])}/{_fmt(t['expected']['effects'])} effects "
            f"(ended: {t['ended']}) | all | {'yes' if complete else 'NO'} |",
            f"| throughput: worker start → first decision visible | {_fmt(t['startup_s'], 2)} s"
            " | | |",
            f"| throughput: worker start → last decision visible | {_fmt(t['elapsed_s'], 2)} s"
            " | | |",
            f"| throughput: worker ({t['processes']} process(es)) | "
            f"{_fmt(t['worker_rate'], 0)} input events/s | | |",
            f"| throughput: floor (bare read_committed consumer + JSON decode, "
            f"{_fmt(t['floor_records'])} records incl. watermarks) | "
            f"{_fmt(t['floor_rate'], 0)} records/s | | |",
            f"| throughput: worker / floor | {t['ratio']:.3f} | ≥ 0.25 | "
            f"{'yes' if t['ratio'] >= 0.25 and complete else 'NO'} |",
            f"| throughput: worker CPU / machine busy | {_fmt(t['worker_cpu'], 0)} % of a core "
            "(worker and relay) / "
            f"{_fmt(t['machine_busy'], 0)} % of all cores | | |",
        ]
    if lat := results.get("latency"):
        rows += [
            f"| latency: tags produced | {_fmt(lat['sent'])} in {_fmt(lat['produce_s'], 1)} s = "
            f"{_fmt(lat['achieved_rate'], 0)}/s (asked {_fmt(args.rate, 0)}/s); "
            f"contacts pre-created, caught up: {lat['warmed']} | | |",
            f"| latency: sms.send seen / decisions seen | {_fmt(lat['sms_seen'])} / "
            f"{_fmt(lat['enrolled_seen'])} (ended: {lat['ended']}) | all | "
            f"{'yes' if lat['sms_seen'] >= lat['sent'] else 'NO'} |",
            f"| latency: produce → sms.send on effects p50 / p99 / max | "
            f"{_fmt(lat['sms_p50'], 0)} / {_fmt(lat['sms_p99'], 0)} / {_fmt(lat['sms_max'], 0)} "
            f"ms | p99 < 250 ms | {'yes' if lat['sms_p99'] < 250 else 'NO'} |",
            f"| latency: p50 of the first / last tenth of the sends | "
            f"{_fmt(lat['sms_first_p50'], 0)} / {_fmt(lat['sms_last_p50'], 0)} ms | | |",
            f"| latency: produce → enrollment.enrolled on decisions p50 / p99 | "
            f"{_fmt(lat['dec_p50'], 0)} / {_fmt(lat['dec_p99'], 0)} ms | | |",
            f"| latency: when producing ended: inputs decided / outbox rows / rows relayed | "
            f"{_fmt(lat['decided_at_end'], 0)} of {_fmt(lat['sent'])} / "
            f"{_fmt(lat['outbox_at_end'])} / {_fmt(lat['relayed_at_end'])} | | |",
            f"| latency: worker CPU / machine busy | {_fmt(lat['worker_cpu'], 0)} % of a core "
            "(worker and relay) / "
            f"{_fmt(lat['machine_busy'], 0)} % of all cores | | |",
        ]
    if tm := results.get("timers"):
        # The marker's decision may become visible after the timers of other partitions
        # (each group fires at its own 12:05 watermark): the firing is timed from the
        # first of the marker and the first timer sms.send.
        span = tm["fire_from_first_s"]
        ok = span is not None and tm["sms"] >= tm["timers"] and span <= 60
        scaled = "" if tm["timers"] >= 100_000 else " (scaled down from 100,000)"
        rows += [
            f"| timers: enrollments due in one minute | {_fmt(tm['timers'])}{scaled}, "
            f"{_fmt(tm['inputs'])} inputs | | |",
            f"| timers: worker start → 12:05 marker decided | {_fmt(tm['to_marker_s'], 1)} s | | |",
            f"| timers: marker → all timer sms.send on effects | {_fmt(tm['fire_s'], 1)} s "
            f"({_fmt(tm['sms'])} sms.send, {_fmt(tm['early'])} before the marker; "
            f"ended: {tm['ended']}) | | |",
            f"| timers: first of (marker, first timer sms.send) visible → last sms.send visible | "
            f"{_fmt(span, 1)} s | ≤ 60 s for 100,000 | {'yes' if ok else 'NO'}{scaled} |",
            f"| timers: worker CPU / machine busy | {_fmt(tm['worker_cpu'], 0)} % of a core "
            "(worker and relay) / "
            f"{_fmt(tm['machine_busy'], 0)} % of all cores | | |",
        ]
    rows.append(
        f"| readers' fetch wait (`fetch_max_wait_ms`) | {args.watch_wait_ms} ms | | |",
    )
    loads = [
        f"- {name}: before `{r['load_before']}`; after `{r['load_after']}`"
        for name, r in results.items()
    ]
    return "\n".join(rows) + "\n\nMachine load (`uptime`):\n" + "\n".join(loads) + "\n"


async def main_async(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    phases = {"throughput": throughput, "latency": latency, "timers": timers}
    for name in args.only or list(phases):
        with fresh_database(args.database_url) as database_url:
            print(f"[{time.strftime('%H:%M:%S')}] {name} …", file=sys.stderr, flush=True)
            results[name] = await phases[name](args, database_url)
            print(f"[{time.strftime('%H:%M:%S')}] {name}: {results[name]}", file=sys.stderr)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB),
        help="an admin URL of a role that may CREATE DATABASE",
    )
    parser.add_argument("--events", type=int, default=200_000, help="throughput input events")
    parser.add_argument("--rate", type=float, default=1000.0, help="latency: events per second")
    parser.add_argument("--rate-seconds", type=float, default=20.0, help="latency: how long")
    parser.add_argument("--timers", type=int, default=100_000, help="timers due in one minute")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument(
        "--processes", type=int, default=1, help="throughput: `worker --processes N`"
    )
    parser.add_argument(
        "--limit", type=float, default=900.0, help="upper bound in seconds on any one wait"
    )
    parser.add_argument(
        "--quiet",
        type=float,
        default=30.0,
        help="stop waiting after this many seconds with nothing new",
    )
    parser.add_argument("--only", action="append", choices=("throughput", "latency", "timers"))
    parser.add_argument(
        "--watch-wait-ms",
        type=int,
        default=20,
        help="fetch_max_wait_ms of the readers that time the decisions (aiokafka: 500)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="also write the table to this file (as given: bench/out/, say, which git ignores)",
    )
    args = parser.parse_args()
    WATCH_WAIT_MS["ms"] = args.watch_wait_ms
    results = asyncio.run(main_async(args))
    table = report(results, args)
    print(table)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
