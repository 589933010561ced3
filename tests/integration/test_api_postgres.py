"""The HTTP API over PostgreSQL read models it cannot read: a 503 that says why."""

from __future__ import annotations

import psycopg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from ops.api_read_models import PostgresReadModels
from ops.http_api import make_app
from projections import deployment
from projections.postgres import PostgresProjection
from tests.integration.pipeline import cli

pytestmark = pytest.mark.postgres


async def test_the_api_before_any_read_model_answers_503_saying_what_to_run(
    fresh_database_url: str,
) -> None:
    async def publish(topic: str, event: object) -> None:
        raise AssertionError("nothing is published by a read")

    app = make_app(publish, PostgresReadModels(fresh_database_url, schema="nothing_here"))
    async with TestClient(TestServer(app)) as client:
        answer = await client.get("/sequences")
        body = await answer.json()
    assert answer.status == 503
    assert "run `dripstream projections run`" in body["error"]


async def test_read_models_of_another_prefix_are_not_served_beside_this_ones_commands(
    fresh_database_url: str,
) -> None:
    # given read models a projector of `d.` keeps in the schema
    with psycopg.connect(fresh_database_url, autocommit=True) as conn:
        PostgresProjection(conn, schema="shared_rm").ensure_schema()
        deployment.claim(conn, "shared_rm", "d.")

    async def publish(topic: str, event: object) -> None:
        raise AssertionError("nothing is published by a read")

    # when an API sending commands to `b.`'s topics is started on it: refused at the start
    started = cli(
        "api", "--database-url", fresh_database_url, "--schema", "shared_rm",
        "--topic-prefix", "b.", "--port", "1",
    )  # fmt: skip
    assert started.returncode == 2
    assert "follow the topic prefix 'd.', not 'b.'" in started.stderr
    # and one whose database came only later answers 503 saying the same; `d.`'s serves them
    answers = {}
    for prefix in ("b.", "d."):
        models = PostgresReadModels(fresh_database_url, "shared_rm", serves=prefix)
        async with TestClient(TestServer(make_app(publish, models))) as client:
            answer = await client.get("/sequences")
            answers[prefix] = (answer.status, await answer.json())
    assert answers["b."][0] == 503
    assert "give --schema of this deployment's read models" in answers["b."][1]["error"]
    assert answers["d."] == (200, [])


async def test_the_api_without_its_database_answers_503() -> None:
    async def publish(topic: str, event: object) -> None:
        raise AssertionError("nothing is published by a read")

    models = PostgresReadModels("postgresql://nobody:x@127.0.0.1:1/none")
    app = make_app(publish, models)
    async with TestClient(TestServer(app)) as client:
        answer = await client.get("/sequences/welcome/history")
        body = await answer.json()
    assert answer.status == 503
    assert body["error"].startswith("cannot connect to PostgreSQL")


async def test_a_nul_in_an_id_is_an_unknown_id_or_a_refused_key_not_a_server_error(
    fresh_database_url: str,
) -> None:
    # given read models in PostgreSQL, which cannot compare a text holding a NUL
    with psycopg.connect(fresh_database_url, autocommit=True) as conn:
        PostgresProjection(conn, schema="api_nul").ensure_schema()
    sent: list[object] = []

    async def publish(topic: str, event: object) -> None:
        sent.append(event)

    app = make_app(publish, PostgresReadModels(fresh_database_url, schema="api_nul"))
    async with TestClient(TestServer(app)) as client:
        # when an id in the path holds one, then it is an unknown one
        for path in ("/sequences/a%00", "/sequences/a%00/history", "/contacts/a%00"):
            answer = await client.get(path)
            assert answer.status == 404, (path, await answer.text())
            assert (await answer.json())["error"].startswith("unknown ")
        answer = await client.post("/sequences/a%00/enrollments", json={"tag": "hot"})
        assert answer.status == 404
        # and a key in a body that holds one is refused by name
        answer = await client.post("/sequences", json={"id": "a\u0000", "name": "x"})
        assert answer.status == 422
        assert (await answer.json())["field"] == "id"
    assert sent == []
