"""The PostgreSQL schema the effect processors keep their tables in (`--schema`,
`EFFECTS_SCHEMA`): two deployments sharing a database each need their own, or one would
read the other's ledger (a send skipped as done, an inbound text put on the other's
contact) and its power-dialer lists. None keeps the connection's own search path."""

from __future__ import annotations

import re
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

# Lower case only: unquoted in the search path, it must name what CREATE SCHEMA made.
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def schema_problem(schema: str | None) -> str | None:
    """Why `schema` cannot be the effect processors' schema; None when it can."""
    if schema is None or (_NAME.fullmatch(schema) and not schema.startswith("pg_")):
        return None
    return (
        "a lower-case PostgreSQL name (letters, digits, _; at most 63; not pg_…, which are"
        f" PostgreSQL's own), got {schema!r}"
    )


def in_schema(url: str, schema: str | None) -> str:
    """`url` with `schema` as its search path (unqualified table names mean its tables),
    any other options the URL sets kept."""
    if schema is None:
        return url
    options = conninfo_to_dict(url).get("options") or ""
    return make_conninfo(url, options=f"{options} -c search_path={schema}".strip())


def create_schema(schema: str | None) -> sql.Composed | None:
    """The statement that makes the schema, run before the tables (None: none needed)."""
    if schema is None:
        return None
    return sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))


# The topic prefix the schema's ledger serves: one row, as the engine's tables keep theirs.
DEPLOYMENT_TABLE = """
CREATE TABLE IF NOT EXISTS effects_deployment (
    one          boolean PRIMARY KEY DEFAULT true CHECK (one),
    topic_prefix text NOT NULL
);
"""


class AnotherDeploymentsLedgerError(Exception):
    """The ledger in this schema serves another topic prefix's processors."""


async def claim_for(conn: AsyncConnection[Any], prefix: str, schema: str | None) -> None:
    """Take the schema's ledger for the deployment of `prefix`, or refuse when another's
    has it: they would carry out each other's commands once between them, not each."""
    await conn.execute(DEPLOYMENT_TABLE)
    await conn.execute(
        "INSERT INTO effects_deployment (topic_prefix) VALUES (%s) ON CONFLICT (one) DO NOTHING",
        (prefix,),
    )
    cursor = await conn.execute("SELECT topic_prefix FROM effects_deployment")
    row = await cursor.fetchone()
    served = row[0] if row else prefix
    if served != prefix:
        where = f"PostgreSQL schema {schema!r}" if schema else "the connection's search path"
        raise AnotherDeploymentsLedgerError(
            f"the effect ledger in {where} serves the topic prefix {served!r}, not"
            f" {prefix!r}: give each deployment its own schema (--schema, EFFECTS_SCHEMA)"
        )
