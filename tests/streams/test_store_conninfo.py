"""DATABASE_URL as the engine's store reads it: a URL or key=value pairs, nothing dropped."""

from __future__ import annotations

import pytest

from streams.store import UnsupportedDatabaseOptionError, _conninfo


def test_a_url_gives_its_parts_with_the_password_decoded() -> None:
    assert _conninfo("postgresql://ann:p%40ss@db.internal:5433/app") == {
        "dbname": "app",
        "host": "db.internal",
        "port": "5433",
        "user": "ann",
        "password": "p@ss",
    }


def test_key_value_pairs_are_read_as_libpq_reads_them() -> None:
    assert _conninfo("dbname=app host=/var/run/postgresql user=ann") == {
        "dbname": "app",
        "host": "/var/run/postgresql",
        "port": "5432",
        "user": "ann",
        "password": "",
    }


def test_a_socket_directory_in_the_query_is_the_host() -> None:
    assert _conninfo("postgresql:///app?host=/var/run/postgresql")["host"] == "/var/run/postgresql"


def test_an_option_the_pool_cannot_pass_on_is_refused_by_name() -> None:
    with pytest.raises(UnsupportedDatabaseOptionError, match=r"sslmode.*PGSSLMODE"):
        _conninfo("postgresql://ann@db/app?sslmode=require")
