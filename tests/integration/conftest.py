"""A real Kafka broker and a real PostgreSQL server for the integration tests.

Each comes from the first that works: the environment (KAFKA_BOOTSTRAP_SERVERS,
DATABASE_URL); testcontainers, when a Docker engine answers; else ops/kafka.sh and
ops/postgres.sh, which start both on loopback and leave them running for the next session.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

# aiokafka ships no type information (no py.typed marker).
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]
from aiokafka.errors import KafkaError  # type: ignore[import-untyped]
from psycopg import sql

from tests.integration.pipeline import create_topics, delete_topics, new_prefix

REPO = Path(__file__).resolve().parents[2]
# Matches the broker of ops/kafka.sh and docker-compose.kafka.yml (Apache Kafka 3.9).
KAFKA_IMAGE = "confluentinc/cp-kafka:7.9.0"
POSTGRES_IMAGE = "postgres:16"
START_HINT = (
    "set KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL to use running services, "
    "or deselect these tests with -m 'not kafka and not postgres'"
)


class MakeTopic(Protocol):
    def __call__(self, *, partitions: int = 6, prefix: str = "test") -> Awaitable[str]: ...


def _docker_engine_answers() -> bool:
    """True when a Docker engine answers a ping within a few seconds."""
    try:
        # Imported by name: only needed on this path, and the SDK ships no type information.
        client = importlib.import_module("docker").from_env(timeout=3)
    except Exception:  # no SDK, no socket, a bad DOCKER_HOST: all mean no engine
        return False
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


@pytest.fixture(scope="session")
def docker_engine() -> bool:
    """Whether testcontainers can be used; asked only when the environment names no service."""
    return _docker_engine_answers()


def _start_with_script(script: str) -> str:
    """Runs `ops/<script> start` and returns the last line it prints (the address)."""
    path = REPO / "ops" / script
    try:
        done = subprocess.run(
            ["bash", str(path), "start"],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{path} start did not finish within 10 minutes; {START_HINT}", pytrace=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        pytest.fail(
            f"{path} start failed (exit {done.returncode}):\n{done.stderr[-4000:]}\n{START_HINT}",
            pytrace=False,
        )
    return lines[-1]


def _testcontainers_class(name: str, module: str) -> Any:
    """A testcontainers class: from `testcontainers.community.<module>` (4.10 and later),
    else from the older `testcontainers.<module>`."""
    try:
        found = importlib.import_module(f"testcontainers.community.{module}")
    except ImportError:
        found = importlib.import_module(f"testcontainers.{module}")
    return getattr(found, name)


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest) -> Iterator[str]:
    """The bootstrap address of a real Kafka broker, e.g. "127.0.0.1:9092"."""
    if address := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield address
    elif request.getfixturevalue("docker_engine"):
        kafka_container = _testcontainers_class("KafkaContainer", "kafka")
        container = kafka_container(KAFKA_IMAGE).with_kraft().with_env("KAFKA_NUM_PARTITIONS", "6")
        container.start(timeout=180)
        try:
            yield str(container.get_bootstrap_server())
        finally:
            container.stop()
    else:
        yield _start_with_script("kafka.sh")


@pytest.fixture(scope="session")
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A libpq URL of a real PostgreSQL database whose role may create schemas and databases."""
    if url := os.environ.get("DATABASE_URL"):
        yield url
    elif request.getfixturevalue("docker_engine"):
        postgres_container = _testcontainers_class("PostgresContainer", "postgres")
        container = postgres_container(
            POSTGRES_IMAGE,
            username="dripstream_test",
            password="dripstream_test",
            dbname="dripstream_test",
            driver=None,
        )
        container.start()
        try:
            yield str(container.get_connection_url())
        finally:
            container.stop()
    else:
        yield _start_with_script("postgres.sh")


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def kafka_admin(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="dripstream-tests")
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


@pytest.fixture
async def make_topic(kafka_admin: AIOKafkaAdminClient) -> AsyncIterator[MakeTopic]:
    """Creates uniquely named topics (`dripstream.test.<hex>`); deletes them after the test."""
    created: list[str] = []

    async def make(*, partitions: int = 6, prefix: str = "test") -> str:
        name = f"dripstream.{prefix}.{uuid.uuid4().hex[:12]}"
        response = await kafka_admin.create_topics([NewTopic(name, partitions, 1)])
        failures = [error for error in response.topic_errors if error[1] != 0]
        assert not failures, f"could not create topic {name}: {failures}"
        created.append(name)
        return name

    yield make
    if created:
        try:
            await kafka_admin.delete_topics(created)
        except KafkaError as error:  # a leftover topic must not fail a passing test
            warnings.warn(f"could not delete test topics {created}: {error!r}", stacklevel=1)


@pytest.fixture
def pipeline_prefix(kafka_bootstrap: str) -> Iterator[str]:
    """A fresh topic prefix with the input and output topics created; they are deleted
    after the test."""
    prefix = new_prefix()
    create_topics(kafka_bootstrap, prefix)
    try:
        yield prefix
    finally:
        delete_topics(kafka_bootstrap, prefix)


@pytest.fixture
async def kafka_topic(make_topic: MakeTopic) -> str:
    """A fresh topic with 6 partitions, deleted after the test."""
    return await make_topic()


def _admin_connection(database_url: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(database_url, autocommit=True, connect_timeout=10)


@pytest.fixture
def pg_schema(database_url: str) -> Iterator[str]:
    """A fresh, empty schema in the test database, dropped (with its tables) after the test."""
    name = unique_name("t")
    with _admin_connection(database_url) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with _admin_connection(database_url) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


def with_database(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{dbname}"))


@pytest.fixture
def fresh_database_url(database_url: str) -> Iterator[str]:
    """The URL of a new, empty database (same role), dropped after the test."""
    name = unique_name("t")
    with _admin_connection(database_url) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_database(database_url, name)
    finally:
        _drop_database(database_url, name)


def _drop_database(database_url: str, name: str, attempts: int = 50) -> None:
    """DROP ... WITH (FORCE), again while an autovacuum worker holds the database: on
    PostgreSQL 15 FORCE may not terminate one (it runs as no role of ours) and the drop
    fails with InsufficientPrivilege until the worker is done, a moment later."""
    statement = sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name))
    for attempt in range(attempts):
        try:
            with _admin_connection(database_url) as conn:
                conn.execute(statement)
            return
        except psycopg.errors.InsufficientPrivilege:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this folder gets a time limit; a hung broker must not hang CI."""
    for item in items:
        inside = "tests/integration/" in str(item.path).replace(os.sep, "/")
        if inside and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(180))
