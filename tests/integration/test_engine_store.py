"""The worker's store (streams/store.py) on a real PostgreSQL: one transaction per batch of
several partition groups, outbox rows in decision order, and ids that commit in order."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime

import orjson
import psycopg
import pytest
from eventsourcing.persistence import IntegrityError
from psycopg import sql

from streams.store import BatchRecord, EngineStore, GroupProgress, InputRecord, OutboxRow

pytestmark = [pytest.mark.postgres]

NOON = datetime(2027, 1, 4, 12, tzinfo=UTC)


class Store(EngineStore):
    """The store, writing every batch one way: with COPY, or pipelined statements."""

    def __init__(self, database_url: str, schema: str, *, copy: bool) -> None:
        super().__init__(database_url, schema)
        self.copy = copy

    def write(self, batch: BatchRecord) -> None:
        self.recorder.write(batch, copy=self.copy)


@pytest.fixture(params=[True, False], ids=["copy", "pipelined"])
def store(database_url: str, pg_schema: str, request: pytest.FixtureRequest) -> Iterator[Store]:
    opened = Store(database_url, pg_schema, copy=request.param)
    try:
        yield opened
    finally:
        opened.close()


def given_input(topic: str, partition: int, offset: int) -> InputRecord:
    raw = f'{{"id": "{topic}-{partition}-{offset}"}}'.encode()
    return InputRecord(topic, partition, offset, None, 0, raw)


def row(event_id: str, key: str = "c-1") -> OutboxRow:
    return OutboxRow(event_id, "decisions", key, f'{{"id": "{event_id}"}}'.encode())


def outbox(database_url: str, schema: str) -> list[str]:
    with psycopg.connect(database_url) as conn:
        query = sql.SQL("SELECT event_id FROM {}.dripstream_outbox ORDER BY id").format(
            sql.Identifier(schema)
        )
        return [str(r[0]) for r in conn.execute(query).fetchall()]


def batch(
    inputs: list[InputRecord], rows: list[OutboxRow], trackings: dict[int, tuple[int, int]]
) -> BatchRecord:
    """`trackings`: each group's tracking as (what the store must hold, where it moves)."""
    moved = {group: GroupProgress(*pair) for group, pair in trackings.items()}
    record = BatchRecord(trackings=moved, outbox=list(rows))
    for item in inputs:
        record.stored.append(item.stored())
        record.positions[(item.topic, item.partition)] = item.offset
    return record


def test_several_groups_are_recorded_in_one_transaction_and_a_stale_one_refuses_it_all(
    store: Store, database_url: str, pg_schema: str
) -> None:
    # given groups 0 and 1 recorded together up to offset 0
    store.write(
        batch(
            [given_input("contacts", 0, 0), given_input("contacts", 1, 0)],
            [row("a/0"), row("b/0", "c-2")],
            {0: (0, 1), 1: (0, 1)},
        )
    )

    # when a batch moves group 1 on but repeats group 0's position (another worker's view)
    stale = batch(
        [given_input("contacts", 0, 0), given_input("contacts", 1, 1)],
        [row("a/1"), row("b/1", "c-2")],
        {0: (0, 1), 1: (1, 2)},
    )

    # then none of it is kept: not group 1's input, position or decisions either
    with pytest.raises(IntegrityError):
        store.write(stale)
    assert outbox(database_url, pg_schema) == ["a/0", "b/0"]
    assert store.positions() == {("contacts", 0): 0, ("contacts", 1): 0}
    replayed = list(store.replayable(["contacts:0", "contacts:1"]))
    assert [(r.partition, r.event) for r in replayed] == [
        (0, b'{"id":"contacts-0-0"}'),
        (1, b'{"id":"contacts-1-0"}'),
    ]


def test_a_worker_that_missed_a_write_to_one_topic_of_its_group_is_refused_however_far_it_read(
    store: Store, database_url: str, pg_schema: str
) -> None:
    # given group 0 recorded at contacts 0 and calls 0 (tracking 2), then moved by worker A
    # to contacts 1 (tracking 3)
    store.write(batch([given_input("contacts", 0, 0), given_input("calls", 0, 0)], [], {0: (0, 2)}))
    store.write(batch([given_input("contacts", 0, 1)], [row("a/opt-out")], {0: (2, 3)}))

    # when worker B, which rebuilt before A's write, decides two calls records: its sum (4)
    # is past the store's (3), but it never saw contacts 1
    stale = batch(
        [given_input("calls", 0, 1), given_input("calls", 0, 2)], [row("b/sms")], {0: (2, 4)}
    )

    # then the store refuses it whole
    with pytest.raises(IntegrityError):
        store.write(stale)
    assert outbox(database_url, pg_schema) == ["a/opt-out"]
    assert store.positions() == {("contacts", 0): 1, ("calls", 0): 0}


def test_outbox_rows_keep_the_order_they_were_decided_in_and_a_repeat_is_dropped(
    store: Store, database_url: str, pg_schema: str
) -> None:
    store.write(batch([given_input("contacts", 0, 0)], [row("z/0"), row("a/0")], {0: (0, 1)}))

    # when a later batch holds a decision already recorded (a definition adopted twice)
    store.write(batch([given_input("contacts", 0, 1)], [row("a/0"), row("m/0")], {0: (1, 2)}))

    assert outbox(database_url, pg_schema) == ["z/0", "a/0", "m/0"]


def test_ticks_replay_where_they_were_decided_even_two_at_one_moment(
    store: Store, database_url: str, pg_schema: str
) -> None:
    # given an input, a tick, another input and a second tick at the same moment, the
    # second from another store (another worker, or this one after a restart)
    record = batch([given_input("contacts", 2, 0)], [], {2: (0, 1)})
    record.stored.append(store.tick(NOON, ["contacts:2"], 2))
    later = given_input("contacts", 2, 1)
    record.stored.append(later.stored())
    store.write(record)
    other = Store(database_url, pg_schema, copy=store.copy)
    try:
        other.write(BatchRecord(stored=[other.tick(NOON, ["contacts:2"], 2)]))
    finally:
        other.close()

    # then a rebuild sees them in that order
    replayed = list(store.replayable(["contacts:2"]))
    assert [(r.kind, r.at, r.partition) for r in replayed] == [
        ("input", None, 2),
        ("tick", NOON, 2),
        ("input", None, 2),
        ("tick", NOON, 2),
    ]


def test_a_tick_carries_the_definitions_in_force_and_an_adoption_is_no_tick(
    store: Store,
) -> None:
    # given a tick under definitions version 3, then the point where version 4, another
    # worker's change, was adopted (it fired nothing: a rebuild must not fire timers there)
    record = batch([given_input("contacts", 2, 0)], [], {2: (0, 1)})
    record.stored.append(store.tick(NOON, ["contacts:2"], 2, definitions=3))
    record.stored.append(store.tick(NOON, ["contacts:2"], definitions=4, adopted=True))
    store.write(record)

    replayed = list(store.replayable(["contacts:2"]))
    assert [(r.kind, r.definitions, r.partition) for r in replayed] == [
        ("input", 0, 2),
        ("tick", 3, 2),
        ("adopt", 4, None),
    ]


def test_a_write_draws_no_outbox_id_while_an_earlier_write_is_still_open(
    store: Store, database_url: str, pg_schema: str
) -> None:
    """The relay publishes outbox rows by id: a write that drew lower ids and commits
    later would be passed over for ever. So a write takes the log's lock first."""
    store.write(batch([given_input("contacts", 0, 0)], [row("first")], {0: (0, 1)}))
    sequence = sql.SQL("SELECT last_value FROM {}.dripstream_outbox_id_seq").format(
        sql.Identifier(pg_schema)
    )
    table = sql.SQL("LOCK TABLE {}.dripstream_log IN EXCLUSIVE MODE").format(
        sql.Identifier(pg_schema)
    )
    with psycopg.connect(database_url) as open_write:
        # given another write still open, holding the log's lock
        open_write.execute(table)
        drawn_before = open_write.execute(sequence).fetchone()

        # when the store writes meanwhile
        errors: list[BaseException] = []

        def write() -> None:
            # Decisions only, no input to store (dead letters): nothing else takes the lock.
            try:
                store.write(batch([], [row("second")], {0: (1, 2)}))
            except BaseException as error:  # reported by the test thread
                errors.append(error)

        writer = threading.Thread(target=write)
        writer.start()
        _wait_until_blocked(database_url, pg_schema, writer)

        # then it waits for the lock before drawing an id
        assert open_write.execute(sequence).fetchone() == drawn_before
        open_write.rollback()
    writer.join(timeout=60)
    assert not errors, errors
    assert outbox(database_url, pg_schema) == ["first", "second"]


def _wait_until_blocked(database_url: str, schema: str, writer: threading.Thread) -> None:
    """Until some session waits for a lock on the schema's log (or the writer is done,
    which would mean it did not wait at all)."""
    query = (
        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE NOT l.granted AND n.nspname = %s AND c.relname = 'dripstream_log'"
    )
    with psycopg.connect(database_url, autocommit=True) as probe:
        for _ in range(600):
            waiting = probe.execute(query, (schema,)).fetchone()
            if waiting and waiting[0]:
                return
            if not writer.is_alive():
                pytest.fail("the write went through while another write held the log")
            time.sleep(0.05)
    pytest.fail("the write neither waited nor finished")


def test_a_store_reconnected_after_an_outage_goes_on_where_it_was(store: Store) -> None:
    store.write(batch([given_input("contacts", 0, 0)], [row("before")], {0: (0, 1)}))
    # when the worker gives the store a fresh pool (PostgreSQL came back)
    store.reconnect()
    # then it reads and writes on as before
    assert store.positions() == {("contacts", 0): 0}
    store.write(batch([given_input("contacts", 0, 1)], [row("after")], {0: (1, 2)}))
    assert store.positions() == {("contacts", 0): 1}


def test_a_wall_clock_input_replays_with_the_timers_it_fired(store: Store) -> None:
    # given a wall-clock input stored now (its own partition's timers fired before it), one
    # an earlier release stored (every held partition's fired), and an event-clock one
    now = InputRecord("contacts", 2, 0, NOON, 0, b'{"id": "now"}')
    earlier = InputRecord("contacts", 2, 1, NOON, 0, b'{"id": "earlier"}').stored()
    state = orjson.loads(earlier.state)
    del state["own_timers"]
    earlier = replace(earlier, state=orjson.dumps(state))
    event_clock = given_input("contacts", 2, 2)
    store.write(BatchRecord(stored=[now.stored(), earlier, event_clock.stored()]))
    # then a rebuild fires before each what was fired before it when it was decided
    replayed = list(store.replayable(["contacts:2"]))
    assert [r.partition for r in replayed] == [frozenset({2}), None, 2]
