"""`dripstream topics create` and `dripstream topics dump` on the real broker: the topics
made once and kept, and a dump of the output topics the read models load as they load the
replay's output."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]

from schemas.registry import EVENT_TYPES
from tests.integration.pipeline import cli, delete_topics, new_prefix

SCENARIO = Path(__file__).resolve().parents[1] / "engine" / "scenarios"

pytestmark = [pytest.mark.kafka]


@pytest.fixture
def prefix(kafka_bootstrap: str) -> Iterator[str]:
    """A fresh prefix with no topics; whatever a test makes under it is deleted after."""
    name = new_prefix()
    try:
        yield name
    finally:
        delete_topics(kafka_bootstrap, name)


def _partition_counts(bootstrap: str, prefix: str) -> dict[str, int]:
    async def describe() -> dict[str, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            return {
                str(t["topic"])[len(prefix) :]: len(t["partitions"])
                for t in await admin.describe_topics()
                if str(t["topic"]).startswith(prefix)
            }
        finally:
            await admin.close()

    return asyncio.run(describe())


def test_create_makes_every_topic_of_the_prefix_and_keeps_existing_ones(
    kafka_bootstrap: str, prefix: str
) -> None:
    connection = ("--bootstrap", kafka_bootstrap, "--topic-prefix", prefix)
    # when the topics are created, and created again
    first = cli("topics", "create", "--partitions", "3", *connection)
    again = cli("topics", "create", "--partitions", "3", *connection)
    # then every input and output topic is there, co-partitioned; the second run kept them
    assert first.returncode == 0, first.stderr
    assert again.returncode == 0, again.stderr
    assert _partition_counts(kafka_bootstrap, prefix) == {
        **dict.fromkeys(("contacts", "calls", "messages", "appointments", "intake", "commands"), 3),
        **dict.fromkeys(("decisions", "effects", "outcomes", "dlq"), 3),
        "relay-position": 1,
    }
    assert [line.split("\t")[2] for line in first.stdout.splitlines()] == ["created"] * 11
    assert [line.split("\t")[2] for line in again.stdout.splitlines()] == ["exists"] * 11


def test_create_says_which_existing_topics_it_kept_with_another_partition_count(
    kafka_bootstrap: str, prefix: str
) -> None:
    connection = ("--bootstrap", kafka_bootstrap, "--topic-prefix", prefix)
    assert cli("topics", "create", "--partitions", "2", *connection).returncode == 0
    # when asked for 4 partitions over topics made with 2
    again = cli("topics", "create", "--partitions", "4", *connection)
    # then they are kept, and stderr says so rather than a silent "exists"
    assert again.returncode == 0, again.stderr
    assert _partition_counts(kafka_bootstrap, prefix)["contacts"] == 2
    assert "10 existing topic(s) kept as they are, not with 4 partitions" in again.stderr
    assert f"{prefix}contacts" in again.stderr
    assert f"{prefix}relay-position" not in again.stderr  # it has 1 by design


def _make_topics(bootstrap: str, counts: dict[str, int]) -> None:
    async def make() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(n, c, 1) for n, c in counts.items()])
        finally:
            await admin.close()

    asyncio.run(make())


@pytest.mark.postgres
def test_a_worker_refuses_input_topics_that_are_not_co_partitioned(
    kafka_bootstrap: str, database_url: str, pg_schema: str, prefix: str
) -> None:
    # given input topics one of which has another partition count
    counts = {prefix + t: 3 for t in ("contacts", "messages", "appointments", "intake")}
    _make_topics(kafka_bootstrap, {**counts, prefix + "calls": 2, prefix + "commands": 3})
    # when a worker starts on them
    started = cli(
        "worker",
        *("--bootstrap", kafka_bootstrap, "--topic-prefix", prefix),
        *("--database-url", database_url, "--schema", pg_schema),
        timeout=60,
    )
    # then it says which counts differ and exits at once, rather than deciding a contact's
    # calls in another partition group than the rest of its facts
    assert started.returncode == 2, started.stderr
    assert "not co-partitioned" in started.stderr
    assert f"{prefix}calls 2, {prefix}commands 3" in started.stderr


@pytest.mark.postgres
def test_a_worker_refuses_to_start_when_some_input_topics_are_missing(
    kafka_bootstrap: str, database_url: str, pg_schema: str, prefix: str
) -> None:
    # given `contacts` made by hand with 4 partitions, the other inputs not made
    _make_topics(kafka_bootstrap, {prefix + "contacts": 4})
    # when a worker starts (its subscription would have the broker make the others)
    started = cli(
        "worker",
        *("--bootstrap", kafka_bootstrap, "--topic-prefix", prefix),
        *("--database-url", database_url, "--schema", pg_schema),
        timeout=60,
    )
    # then it refuses, naming them and how to make them with the same count
    assert started.returncode == 2, started.stderr
    assert f"input topics missing: {prefix}calls, {prefix}messages" in started.stderr
    made_by = f"make them first (`dripstream topics create --partitions 4 --topic-prefix {prefix}`)"
    assert made_by in started.stderr
    assert set(_partition_counts(kafka_bootstrap, prefix)) == {"contacts"}  # none made


@pytest.mark.postgres
def test_a_worker_refuses_the_tables_of_a_deployment_with_another_prefix(
    kafka_bootstrap: str, database_url: str, pg_schema: str, prefix: str
) -> None:
    # given the engine's tables in a schema, taken by a deployment with another prefix
    from streams.store import EngineStore  # noqa: PLC0415 - psycopg and eventsourcing

    EngineStore(database_url, pg_schema, prefix=f"{prefix}other.").close()
    # when a worker of this prefix is pointed at them
    started = cli(
        "worker",
        *("--bootstrap", kafka_bootstrap, "--topic-prefix", prefix),
        *("--database-url", database_url, "--schema", pg_schema),
        timeout=60,
    )
    # then it refuses at once: its relay would publish the other deployment's decisions
    # (its texts to send among them) on this prefix's topics
    assert started.returncode == 2, started.stderr
    assert (
        f"the engine's tables in PostgreSQL schema {pg_schema!r} serve the topic prefix"
        f" '{prefix}other.', not {prefix!r}: give each deployment its own schema (--schema)"
    ) in started.stderr
    assert "Traceback" not in started.stderr


def _publish(bootstrap: str, prefix: str, lines: list[bytes]) -> None:
    """Each event to its topic keyed by subject, in transactions as the relay writes them
    (so the partitions end in commit markers), and one aborted transaction whose record a
    read_committed dump must not see."""

    async def publish() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, transactional_id=f"{prefix}test-publisher"
        )
        await producer.start()
        try:
            for start in range(0, len(lines), 5):
                async with producer.transaction():
                    for line in lines[start : start + 5]:
                        event = orjson.loads(line)
                        topic = EVENT_TYPES[event["type"]].topic
                        await producer.send(
                            prefix + topic, line, key=str(event["subject"]).encode()
                        )
            await producer.begin_transaction()
            await producer.send(prefix + "decisions", b'{"aborted": true}', key=b"c-1")
            await producer.abort_transaction()
        finally:
            await producer.stop()

    asyncio.run(publish())


def _read_models(history: Path) -> tuple[Any, Any]:
    listed = cli("sequences", "list", "--history", str(history), "--json")
    assert listed.returncode == 0, listed.stderr
    report = cli("history", "welcome", "--history", str(history), "--json")
    assert report.returncode == 0, report.stderr
    page = orjson.loads(report.stdout)
    # equal times are listed in reverse stream order: compare the rows as a multiset
    rows = Counter(orjson.dumps(row, option=orjson.OPT_SORT_KEYS) for row in page["rows"])
    return orjson.loads(listed.stdout), (page["total"], rows)


def test_a_dump_of_the_output_topics_builds_the_read_models_the_replay_output_builds(
    kafka_bootstrap: str, prefix: str, tmp_path: Path
) -> None:
    connection = ("--bootstrap", kafka_bootstrap, "--topic-prefix", prefix)
    assert cli("topics", "create", "--partitions", "3", *connection).returncode == 0
    # given the welcome scenario's decisions and effects, and the CRM's contact facts, on
    # the output topics (as the relay and the CRM write them)
    replayed = tmp_path / "replay.jsonl"
    done = cli(
        "replay",
        "--sequences",
        str(SCENARIO / "welcome.yaml"),
        "--events",
        str(SCENARIO / "welcome.events.jsonl"),
        "--out",
        str(replayed),
    )
    assert done.returncode == 0, done.stderr
    crm = [
        line
        for line in (SCENARIO / "welcome.events.jsonl").read_bytes().splitlines()
        if orjson.loads(line)["type"].startswith("contact.")
    ]
    expected = replayed.read_bytes().splitlines() + crm
    assert crm
    _publish(kafka_bootstrap, prefix, expected)
    # when the output topics are dumped
    dumped = tmp_path / "dump.jsonl"
    dump = cli("topics", "dump", "--out", str(dumped), *connection)
    assert dump.returncode == 0, dump.stderr
    # then the file holds every committed record once, by event time, and nothing aborted
    lines = dumped.read_bytes().splitlines()
    assert Counter(lines) == Counter(expected)
    times = [orjson.loads(line)["time"] for line in lines]
    assert times == sorted(times)  # all in UTC, `Z`: text order is time order
    assert f"dumped {len(expected)} record(s)" in dump.stderr
    # and the read models built from it are those built from the replay and the CRM's facts
    both = tmp_path / "replay-and-crm.jsonl"
    both.write_bytes(b"\n".join(expected) + b"\n")
    assert _read_models(dumped) == _read_models(both)
    # and dumping again gives the same bytes
    again = tmp_path / "again.jsonl"
    assert cli("topics", "dump", "--out", str(again), *connection).returncode == 0
    assert again.read_bytes() == dumped.read_bytes()


def test_dumping_a_topic_that_does_not_exist_is_an_error_and_creates_nothing(
    kafka_bootstrap: str, prefix: str, tmp_path: Path
) -> None:
    dump = cli(
        "topics",
        "dump",
        "--topics",
        "decisions",
        "--out",
        str(tmp_path / "dump.jsonl"),
        "--bootstrap",
        kafka_bootstrap,
        "--topic-prefix",
        prefix,
    )
    assert dump.returncode == 2
    assert f"no topic {prefix}decisions" in dump.stderr
    assert _partition_counts(kafka_bootstrap, prefix) == {}


def test_a_line_too_large_for_kafka_is_named_and_the_lines_after_it_still_go_out(
    kafka_bootstrap: str, prefix: str, tmp_path: Path
) -> None:
    # given a valid event of 2 MB (over the producer's 1 MB request limit) between two others
    def tagged(n: int, tag: str) -> bytes:
        return orjson.dumps(
            {
                "specversion": "1.0",
                "id": f"big-{n}",
                "source": "crm",
                "type": "contact.tag_added",
                "time": f"2028-03-02T22:4{n}:00Z",
                "subject": "c-1",
                "data": {"contact_id": "c-1", "tag": tag},
            }
        )

    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join([tagged(1, "a"), tagged(2, "x" * 2_000_000), tagged(3, "b")]))
    created = cli("topics", "create", "--bootstrap", kafka_bootstrap, "--topic-prefix", prefix)
    assert created.returncode == 0, created.stderr
    # when it is published
    done = cli(
        "produce", "--no-watermarks", str(events), "--bootstrap", kafka_bootstrap,
        "--topic-prefix", prefix,
    )  # fmt: skip
    # then the run says which line was not published, goes on, and ends with status 1
    assert done.returncode == 1, done.stderr
    assert "line 2: not published: MessageSizeTooLargeError" in done.stderr
    assert "published 2 event(s)" in done.stderr
    dump = tmp_path / "contacts.jsonl"
    dumped = cli(
        "topics", "dump", "--topics", "contacts", "--out", str(dump),
        "--bootstrap", kafka_bootstrap, "--topic-prefix", prefix,
    )  # fmt: skip
    assert dumped.returncode == 0, dumped.stderr
    ids = [orjson.loads(line)["id"] for line in dump.read_bytes().splitlines()]
    assert ids == ["big-1", "big-3"]


def test_a_default_dump_passes_over_a_missing_outcomes_topic_but_not_one_asked_for(
    kafka_bootstrap: str, prefix: str, tmp_path: Path
) -> None:
    # given the topics of a deployment whose effects processor never ran (no `outcomes`)
    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics(
                [NewTopic(prefix + name, 1, 1) for name in ("decisions", "effects", "contacts")]
            )
        finally:
            await admin.close()

    asyncio.run(create())
    where = ("--bootstrap", kafka_bootstrap, "--topic-prefix", prefix)
    out = str(tmp_path / "dump.jsonl")
    dumped = cli("topics", "dump", "--out", out, *where)
    assert dumped.returncode == 0, dumped.stderr
    assert f"no topic {prefix}outcomes: passed over" in dumped.stderr
    asked = cli("topics", "dump", "--out", out, "--topics", "decisions,outcomes", *where)
    assert asked.returncode == 2
    assert f"no topic {prefix}outcomes on" in asked.stderr


def _one_tag(path: Path) -> Path:
    path.write_bytes(
        orjson.dumps(
            {
                "specversion": "1.0",
                "id": "t-1",
                "source": "crm",
                "type": "contact.tag_added",
                "time": "2028-03-02T22:41:00Z",
                "subject": "c-1",
                "data": {"contact_id": "c-1", "tag": "hot"},
            }
        )
    )
    return path


def test_produce_on_no_topics_has_the_broker_make_every_input_topic_alike(
    kafka_bootstrap: str, prefix: str, tmp_path: Path
) -> None:
    # given a prefix with no topics, and a file whose one line goes to `contacts`
    events = _one_tag(tmp_path / "events.jsonl")
    # when it is published with no watermarks (which alone would touch every input topic)
    done = cli(
        "produce", "--no-watermarks", str(events), "--bootstrap", kafka_bootstrap,
        "--topic-prefix", prefix,
    )  # fmt: skip
    # then every input topic was made, one count for all, so that a worker takes them
    assert done.returncode == 0, done.stderr
    counts = _partition_counts(kafka_bootstrap, prefix)
    inputs = ("contacts", "calls", "messages", "appointments", "intake", "commands")
    assert set(counts) == set(inputs)
    assert len({counts[name] for name in inputs}) == 1


def test_produce_refuses_to_make_the_missing_input_topics_beside_ones_made_by_hand(
    kafka_bootstrap: str, prefix: str, tmp_path: Path
) -> None:
    # given `contacts` made by hand with 4 partitions, the other inputs not made
    _make_topics(kafka_bootstrap, {prefix + "contacts": 4})
    events = _one_tag(tmp_path / "events.jsonl")
    # when a file is published, and a sequence command
    done = cli("produce", str(events), "--bootstrap", kafka_bootstrap, "--topic-prefix", prefix)
    enrolled = cli(
        "sequences", "enroll", "welcome", "--contact", "c-1",
        "--bootstrap", kafka_bootstrap, "--topic-prefix", prefix,
    )  # fmt: skip
    # then both refuse as a worker would, naming the topics and how to make them; nothing
    # was published and no topic made at the broker's default count
    for run in (done, enrolled):
        assert run.returncode == 2, run.stderr
        assert f"input topics missing: {prefix}calls, {prefix}messages" in run.stderr
        assert f"(`dripstream topics create --partitions 4 --topic-prefix {prefix}`)" in run.stderr
    assert "nothing published" in done.stderr
    assert _partition_counts(kafka_bootstrap, prefix) == {"contacts": 4}
