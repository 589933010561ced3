"""Fixtures of the effects tests: fake provider servers on loopback, and PostgreSQL.

`database_url`: DATABASE_URL when set, else the project's test server on 127.0.0.1:55432
(`tests/integration/conftest.py` starts it for the integration suite) when it answers;
otherwise the PostgreSQL tests are skipped.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import AsyncIterator, Iterator
from urllib.parse import quote

import psycopg
import pytest

from effects.fakes.sendgrid_server import FakeSendGridServer
from effects.fakes.twilio_server import FakeTwilioServer
from effects.fakes.webhook_receiver import FakeWebhookReceiver

PROJECT_TEST_DATABASE = "postgresql://dripstream_test:dripstream_test@127.0.0.1:55432/dripstream_test"


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    url = os.environ.get("DATABASE_URL")
    if not url and _answers("127.0.0.1", 55432):
        url = PROJECT_TEST_DATABASE
    if not url:
        pytest.skip("no PostgreSQL: set DATABASE_URL or start ops/postgres.sh")
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as error:
        pytest.skip(f"PostgreSQL at {url} does not answer: {error}")
    yield url


@pytest.fixture
def clean_database(database_url: str) -> Iterator[str]:
    """A URL whose connections work in a fresh schema of their own, dropped afterwards: the
    effects tables start empty and no other test (or engineer) sees them."""
    schema = f"fx_{secrets.token_hex(6)}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in database_url else "?"
    yield f"{database_url}{separator}options={quote(f'-c search_path={schema}')}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilioServer]:
    async with FakeTwilioServer() as server:
        yield server


@pytest.fixture
async def sendgrid() -> AsyncIterator[FakeSendGridServer]:
    async with FakeSendGridServer() as server:
        yield server


@pytest.fixture
async def receiver() -> AsyncIterator[FakeWebhookReceiver]:
    async with FakeWebhookReceiver() as server:
        yield server
