"""Crashes and scale-out change nothing: exactly the decisions of an uninterrupted replay."""

from __future__ import annotations

import collections
import random
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.integration.history import write_history
from tests.integration.pipeline import (
    cli,
    comparable,
    read_topics,
    start_worker,
    stop,
)

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(900)]


def _replay(tmp_path: Path, definitions: Path, history: Path) -> list[dict[str, Any]]:
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


def _publish(bootstrap: str, prefix: str, definitions: Path, history: Path) -> None:
    applied = cli(
        "sequences", "apply", str(definitions), "--bootstrap", bootstrap, "--topic-prefix", prefix
    )
    assert applied.returncode == 0, applied.stderr
    # Definitions go ahead of the traffic they govern: every worker adopts them from the
    # store at its next batch, which Kafka cannot order against other topics' records.
    time.sleep(3)
    produced = cli(
        "produce", str(history), "--bootstrap", bootstrap, "--topic-prefix", prefix, timeout=300
    )
    assert produced.returncode == 0, produced.stderr


def _effect_ids_once(got: list[dict[str, Any]]) -> None:
    counts = collections.Counter(e["data"]["effect_id"] for e in got if e["_topic"] == "effects")
    assert counts, "no effect commands at all"
    assert max(counts.values()) == 1, [k for k, v in counts.items() if v > 1][:5]


def test_sigkill_five_times_during_20000_events_changes_nothing(
    kafka_bootstrap: str, pipeline_prefix: str, fresh_database_url: str, tmp_path: Path
) -> None:
    definitions, history = write_history(tmp_path, events=20_000, contacts=3_000)
    expected = _replay(tmp_path, definitions, history)
    prefix = pipeline_prefix
    rnd = random.Random(5)
    worker = start_worker(kafka_bootstrap, fresh_database_url, prefix)
    try:
        _publish(kafka_bootstrap, prefix, definitions, history)
        for _ in range(5):
            time.sleep(rnd.uniform(1.0, 5.0))
            stop(worker, kill=True)
            worker = start_worker(kafka_bootstrap, fresh_database_url, prefix)
        got = _decisions(kafka_bootstrap, prefix, expected)
        assert worker.poll() is None, "the worker died"
    finally:
        stop(worker)
    _effect_ids_once(got)
    decided = [e for e in got if e.get("source") == "dripstream"]
    twice = [i for i, n in collections.Counter(e["id"] for e in decided).items() if n > 1]
    assert not twice, f"published twice: {twice[:10]}"
    _same(comparable(got), comparable(expected))


def _decisions(bootstrap: str, prefix: str, expected: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Everything the pipeline published, read until replay's count arrived or all is quiet."""
    return read_topics(
        bootstrap,
        prefix,
        ("decisions", "effects", "contacts"),
        expect=len(expected),
        quiet=20,
        limit=600,
    )


def _same(
    got: set[tuple[str, str, str, bytes]], expected: set[tuple[str, str, str, bytes]]
) -> None:
    extra, missing = sorted(got - expected)[:5], sorted(expected - got)[:5]
    assert not extra, f"decided but not by replay: {extra}"
    assert not missing, f"decided by replay only: {missing}"


def test_two_workers_sharing_the_partitions_decide_as_one(
    kafka_bootstrap: str, pipeline_prefix: str, fresh_database_url: str, tmp_path: Path
) -> None:
    definitions, history = write_history(tmp_path, events=6_000, contacts=1_000, seed=11)
    expected = _replay(tmp_path, definitions, history)
    prefix = pipeline_prefix
    first = start_worker(kafka_bootstrap, fresh_database_url, prefix)
    second = start_worker(kafka_bootstrap, fresh_database_url, prefix)
    try:
        time.sleep(3)
        _publish(kafka_bootstrap, prefix, definitions, history)
        got = _decisions(kafka_bootstrap, prefix, expected)
        assert first.poll() is None, "the first worker died"
        assert second.poll() is None, "the second worker died"
    finally:
        stop(first)
        stop(second)
    _effect_ids_once(got)
    _same(comparable(got), comparable(expected))


def test_a_backlog_published_before_the_worker_starts_is_decided_with_its_definitions(
    kafka_bootstrap: str, pipeline_prefix: str, fresh_database_url: str, tmp_path: Path
) -> None:
    definitions, history = write_history(tmp_path, events=4_000, contacts=800, seed=3)
    expected = _replay(tmp_path, definitions, history)
    prefix = pipeline_prefix
    _publish(kafka_bootstrap, prefix, definitions, history)
    worker = start_worker(kafka_bootstrap, fresh_database_url, prefix)
    try:
        got = _decisions(kafka_bootstrap, prefix, expected)
        assert worker.poll() is None, "the worker died"
    finally:
        stop(worker)
    _same(comparable(got), comparable(expected))
