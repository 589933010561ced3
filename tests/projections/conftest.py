"""PostgreSQL for the projection tests: the integration suite's `database_url` and `pg_schema`
fixtures when that suite is there, else DATABASE_URL (the tests skip without it)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from projections.postgres import PostgresProjection

try:
    # Fixtures, found by pytest under these names (database_url needs docker_engine).
    from tests.integration.conftest import database_url, docker_engine, pg_schema  # noqa: F401
except ModuleNotFoundError as missing:  # that suite is absent: DATABASE_URL, or these skip
    if not (missing.name or "").startswith("tests.integration"):
        raise  # a library that suite needs is missing: an error, not a quiet skip

    @pytest.fixture(scope="session")
    def database_url() -> str:
        url = os.environ.get("DATABASE_URL")
        if not url:
            pytest.skip("no PostgreSQL: set DATABASE_URL")
        return url

    @pytest.fixture
    def pg_schema(database_url: str) -> Iterator[str]:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        try:
            yield name
        finally:
            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
def projection(conn: psycopg.Connection[Any], pg_schema: str) -> PostgresProjection:
    projection = PostgresProjection(conn, schema=pg_schema)
    projection.ensure_schema()
    return projection
