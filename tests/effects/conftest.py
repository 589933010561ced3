"""Fixtures of the effects tests: fake provider servers on loopback, and PostgreSQL.

`database_url` is the integration suite's (tests/integration/conftest.py): DATABASE_URL,
else testcontainers, else ops/postgres.sh. Without that suite: DATABASE_URL, or skip.
`clean_database` gives each test a schema of its own in that database.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from urllib.parse import quote

import psycopg
import pytest

from effects.fakes.mailgun_server import FakeMailgunServer
from effects.fakes.sendgrid_server import FakeSendGridServer
from effects.fakes.twilio_server import FakeTwilioServer
from effects.fakes.webhook_receiver import FakeWebhookReceiver

try:
    # The integration suite's fixtures: DATABASE_URL, else testcontainers, else
    # ops/postgres.sh (started on loopback and left running).
    from tests.integration.conftest import (  # noqa: F401
        database_url,
        docker_engine,
        kafka_admin,
        kafka_bootstrap,
    )
except ModuleNotFoundError as missing:  # that suite is absent: DATABASE_URL, or these skip
    if not (missing.name or "").startswith("tests.integration"):
        raise  # a library that suite needs is missing: an error, not a quiet skip

    @pytest.fixture(scope="session")
    def database_url() -> str:
        url = os.environ.get("DATABASE_URL")
        if not url:
            pytest.skip("no PostgreSQL: set DATABASE_URL")
        try:
            with psycopg.connect(url, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as error:
            pytest.skip(f"PostgreSQL at {url} does not answer: {error}")
        return url


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
async def mailgun() -> AsyncIterator[FakeMailgunServer]:
    async with FakeMailgunServer() as server:
        yield server


@pytest.fixture
async def receiver() -> AsyncIterator[FakeWebhookReceiver]:
    async with FakeWebhookReceiver() as server:
        yield server
