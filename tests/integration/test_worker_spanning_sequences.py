"""Sequences spanning contacts (a throttle, a round robin) keep every partition with one
worker: across a rebalance each step runs where its published decisions said, and no minute
takes more than the throttle.

(With the partitions spread, each worker would allow the throttle apiece, and one rebuilt
with part of them would decide its inputs again against a throttle missing the others'
places: steps ran before the minute their `step.deferred` named, or never.)
"""

from __future__ import annotations

import collections
import re
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from schemas.envelope import format_time, parse_time
from tests.integration.pipeline import (
    cli,
    free_port,
    metric,
    read_topics,
    start_worker,
    stop,
)

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(600)]

LIMIT = 2  # step executions a minute
STEPS = ("w1", "w2", "w3")
START = datetime.fromisoformat("2027-03-01T15:00:00+00:00")
DEFINITIONS = {
    "account": {
        "timezone": "America/Chicago",
        "opt_out_phrase": "Reply STOP to opt out.",
        "users": {"u-1": {"name": "Ann"}, "u-2": {"name": "Bo"}},
    },
    "sequences": [
        {
            "id": "drip",
            "name": "Drip",
            "process_on": "every_day",
            "throttle_per_minute": LIMIT,
            "steps": [
                {
                    "id": step,
                    "type": "send_webhook",
                    "url": "https://hooks.example.com/drip",
                    "delay": {"kind": "none"}
                    if n == 0
                    else {"kind": "default", "amount": 1, "unit": "minutes"},
                }
                for n, step in enumerate(STEPS)
            ],
            "triggers": [{"type": "contact_created"}],
        }
    ],
}


def _event(n: int, kind: str, at: datetime, contact: str, **data: Any) -> bytes:
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": f"e-{n}",
            "source": "crm",
            "type": kind,
            "time": format_time(at),
            "subject": contact,
            "data": {"contact_id": contact, **data},
        }
    )


def _parts(tmp_path: Path) -> list[Path]:
    """Contacts created 5 s apart, then 20 more later, then an update of each a day on
    (every partition's event clock passes every due step)."""
    first = [
        _event(n, "contact.created", START + timedelta(seconds=5 * n), f"c-{n}") for n in range(40)
    ]
    later = START + timedelta(minutes=20)
    second = [
        _event(n, "contact.created", later + timedelta(seconds=5 * n), f"c-{n}")
        for n in range(40, 60)
    ]
    end = START + timedelta(days=1)
    third = [_event(100 + n, "contact.updated", end, f"c-{n}", state="TX") for n in range(60)]
    parts = []
    for n, lines in enumerate((first, second, third)):
        part = tmp_path / f"part{n}.jsonl"
        part.write_bytes(b"\n".join(lines) + b"\n")
        parts.append(part)
    return parts


ALL = "0, 1, 2, 3, 4, 5"
GROUPS, ONE_WORKER = "dripstream_partition_groups_held", "dripstream_one_worker"
ASSIGNED = re.compile(r"assigned partition groups ([\d, ]+|none) of (\d+)")


def _assignments(log: Path) -> list[str]:
    return [m.group(1) for m in ASSIGNED.finditer(log.read_text(errors="replace"))]


def _wait_for(what: str, condition: Any, limit: float = 90) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"not seen in {limit:g} s: {what}")


def _each_step_ran_where_it_was_placed(
    decisions: list[dict[str, Any]], contacts: int = 60, steps: tuple[str, ...] = STEPS
) -> None:
    by_contact: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for event in decisions:
        by_contact[event["data"]["contact_id"]].append(event)
    assert len(by_contact) == contacts, sorted(by_contact)
    for contact, events in by_contact.items():
        placed: dict[str, str] = {}
        ran: list[tuple[str, str]] = []
        for event in events:
            data = event["data"]
            if event["type"] == "step.scheduled":
                placed[data["step_id"]] = data["due_at"]
            elif event["type"] == "step.deferred":
                placed[data["step_id"]] = data["to"]
            elif event["type"] == "step.executed":
                ran.append((data["step_id"], event["time"]))
        assert [step for step, _ in ran] == list(steps), (contact, ran)
        for step, at in ran:
            assert parse_time(at) == parse_time(placed[step]), (contact, step, at, placed[step])
        assert [e["type"] for e in events].count("enrollment.completed") == 1, contact


def test_a_throttled_sequence_stays_with_one_worker_across_rebalances(
    kafka_bootstrap: str, pipeline_prefix: str, fresh_database_url: str, tmp_path: Path
) -> None:
    definitions = tmp_path / "drip.yaml"
    definitions.write_text(yaml.safe_dump(DEFINITIONS))
    first, second, third = _parts(tmp_path)
    prefix = pipeline_prefix
    logs = [tmp_path / "worker-a.log", tmp_path / "worker-b.log"]

    def start(n: int) -> Any:
        return start_worker(
            kafka_bootstrap, fresh_database_url, prefix, "--session-timeout", "10", log_to=logs[n]
        )

    def publish(*args: str) -> None:
        done = cli(*args, "--bootstrap", kafka_bootstrap, "--topic-prefix", prefix)
        assert done.returncode == 0, done.stderr

    workers = [start(0)]
    try:
        publish("sequences", "apply", str(definitions))
        time.sleep(3)  # adopted by the worker before the traffic it governs
        publish("produce", str(first))
        read_topics(kafka_bootstrap, prefix, ("decisions",), expect=40, quiet=30, limit=60)
        # A second worker joins while most steps wait for their minute: one of the two
        # takes every partition (the lower member id), the other stands by.
        workers.append(start(1))
        _wait_for("b assigned", lambda: _assignments(logs[1]))
        _wait_for("a assigned again", lambda: len(_assignments(logs[0])) >= 2)
        now = [_assignments(log)[-1] for log in logs]
        assert sorted(now) == [ALL, "none"]
        publish("produce", str(second))
        time.sleep(2)
        # The holder dies: the other takes every partition over and rebuilds them all.
        holder = now.index(ALL)
        stop(workers[holder], kill=True)
        _wait_for("the other took all", lambda: _assignments(logs[1 - holder])[-1] == ALL)
        publish("produce", str(third))
        got = read_topics(
            kafka_bootstrap,
            prefix,
            ("decisions", "effects"),
            expect=None,
            quiet=20,
            limit=300,
        )
        assert workers[1 - holder].poll() is None, "the worker taking over died"
    finally:
        for worker in workers:
            stop(worker)
    decisions = [e for e in got if e["_topic"] == "decisions" and e["type"] != "sequence.defined"]
    _each_step_ran_where_it_was_placed(decisions)
    per_minute = collections.Counter(
        e["time"][:16] for e in decisions if e["type"] == "step.executed"
    )
    assert max(per_minute.values()) <= LIMIT, per_minute.most_common(3)
    assert sum(per_minute.values()) == 60 * len(STEPS)
    effects = collections.Counter(e["data"]["effect_id"] for e in got if e["_topic"] == "effects")
    assert len(effects) == 60 * len(STEPS)
    assert max(effects.values()) == 1


ROUND_ROBIN = {"id": "rr", "type": "round_robin_owner", "owners": ["u-1", "u-2"]}


@pytest.mark.parametrize(
    "spanning",
    [{"throttle_per_minute": LIMIT}, {"steps": [ROUND_ROBIN]}],
    ids=["throttle", "round_robin"],
)
def test_the_first_sequence_spanning_contacts_gathers_the_partitions_for_good(
    kafka_bootstrap: str,
    pipeline_prefix: str,
    fresh_database_url: str,
    tmp_path: Path,
    spanning: dict[str, Any],
) -> None:
    prefix = pipeline_prefix
    logs = [tmp_path / "worker-a.log", tmp_path / "worker-b.log"]
    plain = {"throttle_per_minute": None, "steps": DEFINITIONS["sequences"][0]["steps"]}

    def apply(changes: dict[str, Any]) -> None:
        document = orjson.loads(orjson.dumps(DEFINITIONS))
        document["sequences"][0].update(changes)
        definitions = tmp_path / f"drip-{len(list(tmp_path.glob('drip-*')))}.yaml"
        definitions.write_text(yaml.safe_dump(document))
        done = cli(
            "sequences", "apply", str(definitions), "--bootstrap", kafka_bootstrap,
            "--topic-prefix", prefix,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr

    def held() -> list[str]:
        return sorted(_assignments(log)[-1] if _assignments(log) else "?" for log in logs)

    ports = [free_port(), free_port()]

    def gauges(name: str) -> list[float | None]:
        return sorted((metric(port, name) for port in ports), key=lambda v: v or 0.0)

    workers = [
        start_worker(
            kafka_bootstrap, fresh_database_url, prefix, "--metrics-port", str(port), log_to=log
        )
        for log, port in zip(logs, ports, strict=True)
    ]
    try:
        _wait_for("spread", lambda: held() == ["0, 1, 2", "3, 4, 5"])
        _wait_for("spread, served", lambda: gauges(GROUPS) == [3.0, 3.0])
        assert gauges(ONE_WORKER) == [0.0, 0.0]
        apply(spanning)
        _wait_for("gathered", lambda: held() == [ALL, "none"])
        _wait_for("gathered, served", lambda: gauges(GROUPS) == [0.0, 6.0])
        assert gauges(ONE_WORKER) == [1.0, 1.0]
        # Gone, it leaves inputs decided under it in the store, which a rebuild with
        # part of the partitions would decide again without the others' places.
        apply(plain)
        time.sleep(5)
        assert held() == [ALL, "none"]
        assert gauges(ONE_WORKER) == [1.0, 1.0]
        assert all(worker.poll() is None for worker in workers), "a worker died"
    finally:
        for worker in workers:
            stop(worker)


@pytest.mark.parametrize("snapshot_every", ["600", "1"], ids=["replaying", "from-snapshots"])
def test_takeovers_from_a_killed_holder_go_on_as_it_published(
    kafka_bootstrap: str,
    pipeline_prefix: str,
    fresh_database_url: str,
    tmp_path: Path,
    snapshot_every: str,
) -> None:
    # Three workers, a sequence with a throttle and a round robin, contacts created while
    # the holder of every partition is killed twice: each standby taking over rebuilds
    # every partition (each group's event clock followed, as live) and goes on exactly
    # where the published decisions left off; with a snapshot every second, from the
    # killed holder's last one and what was stored after it.
    contacts, limit = 600, 4
    steps = ("w1", "rr", "w2")
    document = orjson.loads(orjson.dumps(DEFINITIONS))
    sequence = document["sequences"][0]
    sequence["throttle_per_minute"] = limit
    hook, _, _ = sequence["steps"]
    sequence["steps"] = [
        {**hook, "id": "w1"},
        {**ROUND_ROBIN, "delay": {"kind": "none"}},
        {**hook, "id": "w2", "delay": {"kind": "none"}},
    ]
    definitions = tmp_path / "drip.yaml"
    definitions.write_text(yaml.safe_dump(document))
    created = [
        _event(n, "contact.created", START + timedelta(seconds=7 * n), f"c-{n}")
        for n in range(contacts)
    ]
    later = [
        _event(10_000 + n, "contact.updated", START + timedelta(days=2), f"c-{n}", state="TX")
        for n in range(contacts)
    ]
    parts = []
    for n, lines in enumerate([created[:200], created[200:400], created[400:], later]):
        part = tmp_path / f"part{n}.jsonl"
        part.write_bytes(b"\n".join(lines) + b"\n")
        parts.append(part)
    prefix = pipeline_prefix
    logs = {name: tmp_path / f"worker-{name}.log" for name in ("a", "b", "c", "d", "e")}

    def start(name: str) -> Any:
        return start_worker(
            kafka_bootstrap,
            fresh_database_url,
            prefix,
            "--session-timeout",
            "6",
            "--snapshot-every",
            snapshot_every,
            log_to=logs[name],
        )

    def publish(*args: str) -> None:
        done = cli(*args, "--bootstrap", kafka_bootstrap, "--topic-prefix", prefix, timeout=300)
        assert done.returncode == 0, done.stderr

    def holder() -> str | None:
        live = [n for n, w in workers.items() if w.poll() is None and _assignments(logs[n])]
        holding = [n for n in live if _assignments(logs[n])[-1] == ALL]
        return holding[0] if len(holding) == 1 else None

    publish("sequences", "apply", str(definitions))
    workers = {name: start(name) for name in ("a", "b", "c")}
    try:
        for part, replacement in zip(parts[:3], ("d", "e", None), strict=True):
            _wait_for("one holder", lambda: holder() is not None)
            publish("produce", str(part))
            if replacement is not None:
                time.sleep(2)  # some of it decided, more waiting for its minute
                stop(workers[holder() or ""], kill=True)
                workers[replacement] = start(replacement)
        _wait_for("one holder", lambda: holder() is not None)
        publish("produce", str(parts[3]))
        got = read_topics(
            kafka_bootstrap, prefix, ("decisions", "effects", "contacts"), quiet=20, limit=400
        )
    finally:
        for worker in workers.values():
            stop(worker)
    decisions = [e for e in got if e["_topic"] == "decisions" and e["type"] != "sequence.defined"]
    _each_step_ran_where_it_was_placed(decisions, contacts, steps)
    per_minute = collections.Counter(
        e["time"][:16] for e in decisions if e["type"] == "step.executed"
    )
    assert max(per_minute.values()) <= limit, per_minute.most_common(3)
    effects = collections.Counter(e["data"]["effect_id"] for e in got if e["_topic"] == "effects")
    assert len(effects) == contacts * 3  # two webhooks and the new owner's notice each
    assert max(effects.values()) == 1
    owners = collections.Counter(
        e["data"]["owner_id"]
        for e in got
        if e["_topic"] == "contacts" and e["source"] == "dripstream" and "owner_id" in e["data"]
    )
    # Each takeover goes on from the published turn: the turns stay even.
    assert sorted(owners.values()) == [contacts // 2, contacts // 2], owners
    if snapshot_every == "1":
        said = "".join(log.read_text(errors="replace") for log in logs.values() if log.exists())
        assert "took the engine from its snapshot" in said
