"""psycopg 3 on the real PostgreSQL: rows, jsonb and timestamptz come back as they went in."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

pytestmark = pytest.mark.postgres

PAYLOAD = {
    "contact_id": "c-42",
    "name": "Zoë O'Brien",
    "phones": ["+15555550100", "+442071838750"],
    "consent": {"sms": True, "email": False, "voice": None},
    "score": 12.5,
    "attempt": 3,
}


def connect(database_url: str, schema: str) -> psycopg.Connection[tuple[object, ...]]:
    conn = psycopg.connect(database_url, connect_timeout=10)
    conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
    return conn


def create_outbox(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    conn.execute(
        """
        CREATE TABLE outbox (
            position bigint PRIMARY KEY,
            contact_id text NOT NULL,
            data jsonb NOT NULL,
            due timestamptz NOT NULL
        )
        """
    )


def test_jsonb_and_timestamptz_round_trip(database_url: str, pg_schema: str) -> None:
    # given a row whose due time is 9:30 in New York (14:30 UTC) and a nested jsonb document
    due = datetime(2025, 11, 3, 9, 30, tzinfo=ZoneInfo("America/New_York"))
    with connect(database_url, pg_schema) as conn:
        create_outbox(conn)
        conn.execute(
            "INSERT INTO outbox VALUES (%s, %s, %s, %s)",
            (2**40, "c-42", Jsonb(PAYLOAD), due),
        )
        conn.commit()

    # when it is read back by a session in another time zone
    with connect(database_url, pg_schema) as conn:
        conn.execute("SET TIME ZONE 'Asia/Tokyo'")
        position, contact_id, data, read_due = conn.execute(
            "SELECT position, contact_id, data, due FROM outbox"
        ).fetchone() or (None, None, None, None)
        # the server understood the document as JSON, not as text
        phone, sms = conn.execute(
            "SELECT data->'phones'->>1, (data->'consent'->>'sms')::boolean FROM outbox"
        ).fetchone() or (None, None)

    # then the values are the ones written: the same instant, an aware datetime, equal JSON
    assert (position, contact_id, data) == (2**40, "c-42", PAYLOAD)
    assert isinstance(read_due, datetime)
    assert read_due == due
    assert read_due.astimezone(UTC) == datetime(2025, 11, 3, 14, 30, tzinfo=UTC)
    assert read_due.utcoffset() is not None
    assert (phone, sms) == ("+442071838750", True)


def write_in_one_transaction(conn: psycopg.Connection[tuple[object, ...]], *positions: int) -> None:
    due = datetime(2025, 1, 1, tzinfo=UTC)
    with conn.transaction():
        for position in positions:
            conn.execute(
                "INSERT INTO outbox VALUES (%s, %s, %s, %s)",
                (position, f"c-{position}", Jsonb({}), due),
            )


def test_a_rolled_back_transaction_leaves_nothing(database_url: str, pg_schema: str) -> None:
    with connect(database_url, pg_schema) as conn:
        create_outbox(conn)
        conn.commit()

        # given a committed row at position 1
        write_in_one_transaction(conn, 1)

        # when a transaction writes position 2, then repeats position 1
        with pytest.raises(psycopg.errors.UniqueViolation):
            write_in_one_transaction(conn, 2, 1)

        # then position 2 was rolled back with it
        rows = conn.execute("SELECT position FROM outbox ORDER BY position").fetchall()
    assert rows == [(1,)]


def test_a_fresh_database_is_empty_and_reachable(fresh_database_url: str) -> None:
    with psycopg.connect(fresh_database_url, connect_timeout=10) as conn:
        name, tables = conn.execute(
            "SELECT current_database(), count(*) FROM information_schema.tables"
            " WHERE table_schema = 'public'"
        ).fetchone() or (None, None)
    assert name == fresh_database_url.rsplit("/", 1)[1]
    assert tables == 0
