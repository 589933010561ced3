"""Which deployment's topics the read models in a schema follow: one row, as the engine's
tables keep their topic prefix. `projections run` takes a schema for its prefix and refuses
one another prefix's projector took, even before either wrote a row (the offsets it also
checks name topics only once something was read); `api` refuses to serve another prefix's
read models beside its own commands. Read models loaded from a file follow no prefix."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

DEPLOYMENT_TABLE = "projection_deployment"  # dropped when a file's read models replace them
_TABLE = (
    "CREATE TABLE IF NOT EXISTS {s}.projection_deployment ("
    " one boolean PRIMARY KEY DEFAULT true CHECK (one),"
    " topic_prefix text NOT NULL)"
)

_CLAIM = (
    "INSERT INTO {s}.projection_deployment (topic_prefix) VALUES (%s) ON CONFLICT (one) DO NOTHING"
)
_TAKE = (
    "INSERT INTO {s}.projection_deployment (topic_prefix) VALUES (%s)"
    " ON CONFLICT (one) DO UPDATE SET topic_prefix = excluded.topic_prefix"
)


def lock_schema(conn: psycopg.Connection[Any], schema: str) -> None:
    """Within a transaction: one projector at a time makes the schema's tables (two making
    the same one at once: one fails on PostgreSQL's catalog, not on IF NOT EXISTS)."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"dripstream.readmodels:{schema}",))


def claim(conn: psycopg.Connection[Any], schema: str, prefix: str, *, take: bool = False) -> str:
    """The prefix the schema's read models follow after this: `prefix`, unless another's
    projector took them first; `take` gives them to `prefix` whatever they followed (a
    reset, which rebuilds them from `prefix`'s topics)."""
    name = sql.Identifier(schema)
    with conn.transaction():
        lock_schema(conn, schema)
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(name))
        conn.execute(sql.SQL(_TABLE).format(s=name))
        conn.execute(sql.SQL(_TAKE if take else _CLAIM).format(s=name), (prefix,))
        row = conn.execute(
            sql.SQL("SELECT topic_prefix FROM {s}.projection_deployment").format(s=name)
        ).fetchone()
    return str(row[0]) if row else prefix


def followed(conn: psycopg.Connection[Any], schema: str) -> str | None:
    """The prefix whose topics the schema's read models follow; None: none said (no read
    models yet, loaded from a file, or written by an earlier release)."""
    exists = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL",
        (sql.Identifier(schema, "projection_deployment").as_string(conn),),
    ).fetchone()
    if not exists or not exists[0]:
        return None
    row = conn.execute(
        sql.SQL("SELECT topic_prefix FROM {s}.projection_deployment").format(
            s=sql.Identifier(schema)
        )
    ).fetchone()
    return str(row[0]) if row else None
