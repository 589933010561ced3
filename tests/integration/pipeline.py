"""Drive the real pipeline from tests: the CLI in subprocesses, topics read back with aiokafka."""

from __future__ import annotations

import asyncio
import collections
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer  # type: ignore[import-untyped]
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]

REPO = Path(__file__).resolve().parents[2]
INPUTS = ("contacts", "calls", "messages", "appointments", "intake", "commands")
OUTPUTS = ("decisions", "effects", "outcomes", "dlq", "relay-position")


def new_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}."


def create_topics(bootstrap: str, prefix: str, partitions: int = 6) -> None:
    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics(
                [
                    NewTopic(prefix + t, num_partitions=partitions, replication_factor=1)
                    for t in INPUTS + OUTPUTS
                ]
            )
        finally:
            await admin.close()

    asyncio.run(create())


def delete_topics(bootstrap: str, prefix: str) -> None:
    """Every topic named with `prefix`: a broker that keeps each test's topics grows by
    dozens of partitions a test and takes minutes to start again."""

    async def delete() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            names = [t for t in await admin.list_topics() if t.startswith(prefix)]
            if names:
                await admin.delete_topics(names)
        finally:
            await admin.close()

    asyncio.run(delete())


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ops.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_worker(
    bootstrap: str,
    database_url: str,
    prefix: str,
    *extra: str,
    log_to: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """`dripstream worker --clock event`, its output going to `log_to` (default a new file
    under var/), with `env` added to the environment."""
    log_to = log_to or REPO / "var" / f"worker-{prefix}{uuid.uuid4().hex[:4]}.log"
    # var/ is made by ops/kafka.sh; a broker and database given from outside leave it absent.
    log_to.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_to, "wb")  # noqa: SIM115 - lives with the process
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ops.cli",
            "worker",
            "--clock",
            "event",
            "--bootstrap",
            bootstrap,
            "--database-url",
            database_url,
            "--topic-prefix",
            prefix,
            *extra,
        ],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )


def stop(process: subprocess.Popen[bytes], *, kill: bool = False) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def read_topics(
    bootstrap: str,
    prefix: str,
    topics: tuple[str, ...],
    *,
    expect: int | None = None,
    quiet: float = 6.0,
    limit: float = 120.0,
    keys: bool = False,
    counted: Callable[[dict[str, Any]], bool] | None = None,
) -> list[dict[str, Any]]:
    """Every committed record of the topics, read until `expect` arrived (or nothing new
    came for `quiet` seconds), as decoded JSON with `_topic` added (and with `keys`, the
    record's key in hex as `_key_hex`). With `counted`, only the records it takes count
    towards `expect` (`contacts` holds the producer's inputs besides the engine's
    changes: counted with them, a reader could stop before the last decisions came)."""

    async def read() -> list[dict[str, Any]]:
        consumer = AIOKafkaConsumer(
            *(prefix + t for t in topics),
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            enable_auto_commit=False,
            group_id=None,
        )
        await consumer.start()
        found: list[dict[str, Any]] = []
        arrived = 0  # of the records that count
        started = last = time.monotonic()
        try:
            while time.monotonic() - started < limit:
                batch = await consumer.getmany(timeout_ms=500)
                for tp, records in batch.items():
                    for record in records:
                        item = orjson.loads(record.value)
                        item["_topic"] = tp.topic[len(prefix) :]
                        if keys:
                            item["_key_hex"] = None if record.key is None else record.key.hex()
                        found.append(item)
                        arrived += counted is None or counted(item)
                        last = time.monotonic()
                if expect is not None and arrived >= expect and time.monotonic() - last > 1.0:
                    break
                if time.monotonic() - last > quiet and (expect is None or arrived >= expect):
                    break
        finally:
            await consumer.stop()
        return found

    return asyncio.run(read())


def is_decision(event: dict[str, Any]) -> bool:
    """An event the engine decided, as `comparable` compares them."""
    return event.get("source") == "dripstream" and event["type"] != "sequence.defined"


# Where the engine publishes: its decisions, the effect commands and its contact changes.
OUTPUT_TOPICS = ("decisions", "effects", "contacts")


def read_decided(
    bootstrap: str, prefix: str, expected: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Everything the pipeline published, read until as many decisions as replay made in
    `expected` arrived, or all is quiet for 20 s (`contacts` also holds the producer's
    inputs, so only decisions count towards the number)."""
    return read_topics(
        bootstrap,
        prefix,
        OUTPUT_TOPICS,
        expect=sum(map(is_decision, expected)),
        counted=is_decision,
        quiet=20,
        limit=600,
    )


def comparable(events: list[dict[str, Any]]) -> set[tuple[str, str, str, bytes]]:
    """Decisions compared as a set, ids aside."""
    return {
        (
            e["type"],
            e["time"],
            e.get("subject") or "",
            orjson.dumps(e["data"], option=orjson.OPT_SORT_KEYS),
        )
        for e in events
        if is_decision(e)
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def metric(port: int, name: str) -> float | None:
    """A sample of a worker's Prometheus metrics on `port`; None while it does not serve."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
    except OSError:
        return None  # not serving yet
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def replay_expected(tmp_path: Path, definitions: Path, history: Path) -> list[dict[str, Any]]:
    """What `dripstream replay` decides from the history: what a pipeline must publish."""
    out = tmp_path / "replay.jsonl"
    done = cli(
        "replay",
        "--sequences",
        str(definitions),
        "--events",
        str(history),
        "--out",
        str(out),
        "--leave-windows-open",  # a live worker's minute goes on: notices gathering stay
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return [orjson.loads(line) for line in out.read_bytes().splitlines()]


def apply_definitions(bootstrap: str, prefix: str, definitions: Path) -> None:
    applied = cli(
        "sequences", "apply", str(definitions), "--bootstrap", bootstrap, "--topic-prefix", prefix
    )
    assert applied.returncode == 0, applied.stderr
    # Definitions go ahead of the traffic they govern: every worker adopts them from the
    # store at its next batch, which Kafka cannot order against other topics' records.
    time.sleep(3)


def produce_history(bootstrap: str, prefix: str, history: Path) -> None:
    produced = cli(
        "produce", str(history), "--bootstrap", bootstrap, "--topic-prefix", prefix, timeout=300
    )
    assert produced.returncode == 0, produced.stderr


def effect_ids_once(got: list[dict[str, Any]]) -> None:
    counts = collections.Counter(e["data"]["effect_id"] for e in got if e["_topic"] == "effects")
    assert counts, "no effect commands at all"
    assert max(counts.values()) == 1, [k for k, v in counts.items() if v > 1][:5]


def exactly_replays(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    """What the pipeline published is what replay decides, each effect and each decision
    published once."""
    effect_ids_once(got)
    decided = [e for e in got if e.get("source") == "dripstream"]
    twice = [i for i, n in collections.Counter(e["id"] for e in decided).items() if n > 1]
    assert not twice, f"published twice: {twice[:10]}"
    same_decisions(comparable(got), comparable(expected))


def same_decisions(
    got: set[tuple[str, str, str, bytes]], expected: set[tuple[str, str, str, bytes]]
) -> None:
    assert not got - expected, f"decided but not by replay: {_described(got - expected)}"
    assert not expected - got, f"decided by replay only: {_described(expected - got)}"


def _described(decisions: set[tuple[str, str, str, bytes]]) -> str:
    """How many, over which times, and the first five in time order: a run that stopped
    early shows as a tail of many, not as five of one type."""
    ordered = sorted(decisions, key=lambda d: (d[1], d[0], d[2]))
    return f"{len(ordered)} from {ordered[0][1]} to {ordered[-1][1]}, first {ordered[:5]}"


def wait_for_log(log: Path, pattern: str, count: int = 1, limit: float = 90) -> None:
    """Until a process's log holds `count` matches of the regular expression `pattern`."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if len(re.findall(pattern, log.read_text(errors="replace"))) >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"{log.name}: no {count} x {pattern!r} within {limit:g} s")
