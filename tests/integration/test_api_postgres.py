"""The HTTP API over PostgreSQL read models it cannot read: a 503 that says why."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ops.http_api import PostgresReadModels, make_app

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
