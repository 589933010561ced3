"""Crashes and scale-out change nothing: exactly the decisions of an uninterrupted replay."""

from __future__ import annotations

import random
import re
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import psycopg.conninfo
import psycopg.sql
import pytest

from tests.integration.history import write_history
from tests.integration.pipeline import (
    OUTPUT_TOPICS,
    apply_definitions,
    comparable,
    exactly_replays,
    produce_history,
    read_decided,
    read_topics,
    replay_expected,
    same_decisions,
    start_worker,
    stop,
    wait_for_log,
)

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(900)]


# What a worker logs when it takes partitions over and rebuilds their state from the store.
REBUILT = re.compile(r"replayed (\d+) stored inputs")


def _publish(bootstrap: str, prefix: str, definitions: Path, history: Path) -> None:
    apply_definitions(bootstrap, prefix, definitions)
    produce_history(bootstrap, prefix, history)


def _parts(history: Path, count: int) -> list[Path]:
    """The history's lines in `count` files, in order (each published when the test says)."""
    lines = history.read_bytes().splitlines(keepends=True)
    cut = [len(lines) * n // count for n in range(count + 1)]
    parts = []
    for n in range(count):
        part = history.with_name(f"{history.stem}.part{n}.jsonl")
        part.write_bytes(b"".join(lines[cut[n] : cut[n + 1]]))
        parts.append(part)
    return parts


def test_sigkill_five_times_during_20000_events_changes_nothing(
    kafka_bootstrap: str, pipeline_prefix: str, fresh_database_url: str, tmp_path: Path
) -> None:
    # Every kill lands on a worker at work: each holds the partitions (it has rebuilt) when
    # a fifth of the history starts going out, in eight pushes a moment apart (one would be
    # decided in a single write), and is killed once it has stored a random share of that
    # fifth's decisions, with more records coming and timers due. A 6 s session hands the
    # partitions on soon after.
    definitions, history = write_history(tmp_path, events=20_000, contacts=3_000)
    expected = replay_expected(tmp_path, definitions, history)
    prefix = pipeline_prefix
    rnd = random.Random(5)
    logs = [tmp_path / f"worker-{n}.log" for n in range(6)]
    pushes = _parts(history, 40)
    fifths = [pushes[n : n + 8] for n in range(0, 40, 8)]

    def start(n: int) -> subprocess.Popen[bytes]:
        return start_worker(
            kafka_bootstrap, fresh_database_url, prefix, "--session-timeout", "6", log_to=logs[n]
        )

    worker = start(0)
    try:
        apply_definitions(kafka_bootstrap, prefix, definitions)
        with (
            ThreadPoolExecutor(max_workers=1) as producer,
            psycopg.connect(fresh_database_url, autocommit=True) as store,
        ):
            for n, fifth in enumerate(fifths):
                wait_for_log(logs[n], REBUILT.pattern)
                stored = _stored(store)
                producing = producer.submit(_produce_each, kafka_bootstrap, prefix, fifth)
                share = rnd.uniform(0.2, 0.8) * len(expected) / len(fifths)
                _wait_for_stored(store, stored + share, producing)
                stop(worker, kill=True)
                producing.result()
                worker = start(n + 1)
        got = read_decided(kafka_bootstrap, prefix, expected)
        assert worker.poll() is None, "the worker died"
    finally:
        stop(worker)
    exactly_replays(got, expected)
    # and the kills did come in the middle of the work: a worker after one rebuilt from a
    # store that held part of a fifth, not only whole fifths (and the definitions)
    sizes = [sum(len(push.read_bytes().splitlines()) for push in fifth) for fifth in fifths]
    whole = {1 + sum(sizes[:n]) for n in range(len(sizes))}
    rebuilt = [int(REBUILT.findall(log.read_text())[0]) for log in logs[1:5]]
    assert set(rebuilt) - whole, f"every kill came between two fifths: {rebuilt}"


def _produce_each(bootstrap: str, prefix: str, pushes: list[Path]) -> None:
    for push in pushes:
        produce_history(bootstrap, prefix, push)


def _stored(store: psycopg.Connection[Any]) -> int:
    """How many decisions the worker has stored (the outbox keeps every row it published)."""
    row = store.execute("SELECT count(*) FROM public.dripstream_outbox").fetchone()
    return int(row[0]) if row else 0


def _wait_for_stored(store: psycopg.Connection[Any], rows: float, producing: Future[None]) -> None:
    """Until the outbox holds `rows`, or the fifth is all out and its decisions stopped
    coming (a fifth that decides less than its share)."""
    last, still_since = -1, time.monotonic()
    while (count := _stored(store)) < rows:
        if count != last:
            last, still_since = count, time.monotonic()
        elif producing.done() and time.monotonic() - still_since > 3:
            return
        time.sleep(0.05)


def test_two_workers_sharing_the_partitions_decide_as_one(
    kafka_bootstrap: str, pipeline_prefix: str, fresh_database_url: str, tmp_path: Path
) -> None:
    definitions, history = write_history(tmp_path, events=6_000, contacts=1_000, seed=11)
    expected = replay_expected(tmp_path, definitions, history)
    prefix = pipeline_prefix
    first = start_worker(kafka_bootstrap, fresh_database_url, prefix)
    second = start_worker(kafka_bootstrap, fresh_database_url, prefix)
    try:
        time.sleep(3)
        _publish(kafka_bootstrap, prefix, definitions, history)
        got = read_decided(kafka_bootstrap, prefix, expected)
        assert first.poll() is None, "the first worker died"
        assert second.poll() is None, "the second worker died"
    finally:
        stop(first)
        stop(second)
    exactly_replays(got, expected)


def test_rebalances_in_the_middle_of_the_work_change_nothing(
    kafka_bootstrap: str, pipeline_prefix: str, fresh_database_url: str, tmp_path: Path
) -> None:
    # The partitions move four times while records are in flight, each move once the last
    # one is done: a second worker joins (the first gives half of its partitions up), the
    # first is killed and a third joins (the two take its partitions once its session
    # lapses, rebuilding from the store what it had decided), and the second stops on
    # SIGTERM (it finishes its batch and leaves; the third takes everything).
    definitions, history = write_history(tmp_path, events=20_000, contacts=3_000, seed=23)
    expected = replay_expected(tmp_path, definitions, history)
    prefix = pipeline_prefix
    logs = [tmp_path / f"worker-{n}.log" for n in range(3)]

    def start(n: int) -> subprocess.Popen[bytes]:
        # A 10 s session: the group gives up on the killed one sooner than the default 30.
        return start_worker(
            kafka_bootstrap, fresh_database_url, prefix, "--session-timeout", "10", log_to=logs[n]
        )

    # A third of the history before each move, so there is work whatever the machine's pace.
    first, second, third = _parts(history, 3)
    workers = [start(0)]
    try:
        apply_definitions(kafka_bootstrap, prefix, definitions)
        produce_history(kafka_bootstrap, prefix, first)
        # the first has decided some of it when the second joins, with more coming
        read_topics(kafka_bootstrap, prefix, ("decisions",), expect=1, quiet=30, limit=60)
        workers.append(start(1))
        produce_history(kafka_bootstrap, prefix, second)
        _took_over(logs[1], after=0)
        stop(workers[0], kill=True)
        # records for its partitions come while it is dead: they wait for the others
        produce_history(kafka_bootstrap, prefix, third)
        so_far = read_topics(kafka_bootstrap, prefix, OUTPUT_TOPICS, quiet=1, limit=3)
        decided = [e for e in so_far if e.get("source") == "dripstream"]
        assert len(decided) < len(expected), "all was decided before the partitions moved"
        workers.append(start(2))
        taken = _took_over(logs[2], after=0)
        stop(workers[1])
        assert workers[1].returncode == 0, "the second worker did not stop cleanly"
        _took_over(logs[2], after=len(taken))
        got = read_decided(kafka_bootstrap, prefix, expected)
        assert workers[2].poll() is None, "the third worker died"
    finally:
        for worker in workers:
            stop(worker)
    exactly_replays(got, expected)


def _took_over(log: Path, after: int, limit: float = 90) -> list[int]:
    """Wait until the worker writing `log` has rebuilt more than `after` times, the last
    time from stored inputs (so it took over decided work); how many inputs each time."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        rebuilt = [int(n) for n in REBUILT.findall(log.read_text(errors="replace"))]
        if len(rebuilt) > after and rebuilt[-1] > 0:
            return rebuilt
        time.sleep(0.2)
    raise AssertionError(f"{log.name}: no rebuild from decided work in {limit:g} s")


def test_a_backlog_published_before_the_worker_starts_is_decided_with_its_definitions(
    kafka_bootstrap: str, pipeline_prefix: str, fresh_database_url: str, tmp_path: Path
) -> None:
    definitions, history = write_history(tmp_path, events=4_000, contacts=800, seed=3)
    expected = replay_expected(tmp_path, definitions, history)
    prefix = pipeline_prefix
    _publish(kafka_bootstrap, prefix, definitions, history)
    worker = start_worker(kafka_bootstrap, fresh_database_url, prefix)
    try:
        got = read_decided(kafka_bootstrap, prefix, expected)
        assert worker.poll() is None, "the worker died"
    finally:
        stop(worker)
    same_decisions(comparable(got), comparable(expected))


def test_worker_processes_decide_as_replay_and_stop_cleanly_on_sigterm(
    kafka_bootstrap: str, pipeline_prefix: str, fresh_database_url: str, tmp_path: Path
) -> None:
    # `worker --processes 2`: two workers of one group, each a process, under one parent
    # that forwards SIGTERM; the exit status is 0 only if both stopped cleanly.
    definitions, history = write_history(tmp_path, events=3_000, contacts=600, seed=29)
    expected = replay_expected(tmp_path, definitions, history)
    logs = iter(tmp_path / f"workers-{n}.log" for n in range(4))

    def start() -> tuple[subprocess.Popen[bytes], Path]:
        log = next(logs)
        group = start_worker(
            kafka_bootstrap, fresh_database_url, pipeline_prefix, "--processes", "2", log_to=log
        )
        return group, log

    group, log = start()
    try:
        _both_assigned(log)
        _publish(kafka_bootstrap, pipeline_prefix, definitions, history)
        got = read_decided(kafka_bootstrap, pipeline_prefix, expected)
        assert group.poll() is None, "the workers stopped"
    finally:
        stop(group)
    assert group.returncode == 0
    exactly_replays(got, expected)
    # and again, a stop right after both took their partitions: still 0, every time
    for _ in range(3):
        group, log = start()
        try:
            _both_assigned(log)
        finally:
            stop(group)
        assert group.returncode == 0


# A rebuild as a process of `worker --processes` logs it: its name, then the count (or,
# after a clean stop of the same partitions, the snapshot it took instead).
REBUILT_BY = re.compile(
    r"(dripstream-worker-\d+) dripstream\.worker INFO"
    r" (?:replayed \d+ stored|took the engine from its snapshot)"
)


def _both_assigned(log: Path, limit: float = 60) -> None:
    """Wait until both worker processes logged a rebuild (each took partitions)."""
    deadline = time.monotonic() + limit
    while len(set(REBUILT_BY.findall(log.read_text(errors="replace")))) < 2:
        assert time.monotonic() < deadline, "the two workers did not both take partitions"
        time.sleep(0.1)


def _drop_three_times(admin_url: str, url: str) -> int:
    """PostgreSQL drops every connection to the database three times, at random moments (what
    a restart or a failover does to them); how many it dropped."""
    rnd = random.Random(11)
    dropped = 0
    for _ in range(3):
        time.sleep(rnd.uniform(1.0, 4.0))
        dropped += _drop_connections(admin_url, url)
    return dropped


def _away_for_eight_seconds(admin_url: str, url: str) -> int:
    """The database drops every connection and refuses new ones for 8 s (a restart)."""
    time.sleep(2.0)
    return _refuse_connections_for(admin_url, url, 8.0)


@pytest.mark.parametrize("outage", [_drop_three_times, _away_for_eight_seconds])
def test_postgresql_going_away_under_the_worker_changes_nothing(
    kafka_bootstrap: str,
    pipeline_prefix: str,
    fresh_database_url: str,
    database_url: str,
    tmp_path: Path,
    outage: Callable[[str, str], int],
) -> None:
    # given a worker (and its relay) deciding 20,000 events
    definitions, history = write_history(tmp_path, events=20_000, contacts=3_000)
    expected = replay_expected(tmp_path, definitions, history)
    log = tmp_path / "worker.log"
    worker = start_worker(kafka_bootstrap, fresh_database_url, pipeline_prefix, log_to=log)
    try:
        _publish(kafka_bootstrap, pipeline_prefix, definitions, history)
        # when PostgreSQL goes away meanwhile
        dropped = outage(database_url, fresh_database_url)
        got = read_decided(kafka_bootstrap, pipeline_prefix, expected)
        # then the worker is still up, and decided as replay
        assert worker.poll() is None, log.read_text()[-3000:]
    finally:
        stop(worker)
    assert dropped  # the outage met the worker's connections
    exactly_replays(got, expected)
    _rebuilt_only_when_refused(log)


def _rebuilt_only_when_refused(log: Path) -> None:
    """The worker rebuilt only when it took its partitions, or when a write cut off by the
    outage turned out to have committed (written again, it was refused): a lost write or
    read is done again on a new connection, the engine's state kept."""
    text = log.read_text(errors="replace")
    refused = text.count("a group was recorded elsewhere")
    assert text.count("rebuilt the engine from the store") == 1 + refused, text[-3000:]


def _refuse_connections_for(admin_url: str, url: str, seconds: float) -> int:
    """Refuses new connections to `url`'s database for `seconds`, its client sessions
    terminated first; how many there were."""
    name = psycopg.sql.Identifier(psycopg.conninfo.conninfo_to_dict(url)["dbname"])
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(psycopg.sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(name))
        try:
            dropped = _drop_connections(admin_url, url)
            time.sleep(seconds)
        finally:
            admin.execute(psycopg.sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(name))
    return dropped


def _drop_connections(admin_url: str, url: str) -> int:
    """Terminates every client session on `url`'s database; how many there were.

    Only client backends of our own user: an autovacuum worker can be on the database too,
    and only a superuser may terminate it.
    """
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(admin_url, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend' AND usename = current_user",
            (name,),
        ).fetchall()
    return len(rows)
