"""The PostgreSQL schema the effect processors keep their tables in (`--schema`,
`EFFECTS_SCHEMA`): two deployments sharing a database each need their own, or one would
read the other's ledger (a send skipped as done, an inbound text put on the other's
contact) and its power-dialer lists. None keeps the connection's own search path."""

from __future__ import annotations

import re

from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

# Lower case only: unquoted in the search path, it must name what CREATE SCHEMA made.
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def schema_problem(schema: str | None) -> str | None:
    """Why `schema` cannot be the effect processors' schema; None when it can."""
    if schema is None or _NAME.fullmatch(schema):
        return None
    return f"a lower-case PostgreSQL name (letters, digits, _; at most 63), got {schema!r}"


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
