"""Calls from web pages of other origins: `dripstream api --allow-origin` (ops/api_cors.py)."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer

from ops import api_cli
from ops.api_auth import Tokens
from ops.api_read_models import FileReadModels
from ops.http_api import make_app
from projections.loading import load_file
from tests.ops.test_http_api import Sink, definitions, output_file  # noqa: F401 - fixtures

DASHBOARD = "https://dashboard.example.com"
ADMIN = "admin-token"


@pytest.fixture
async def guarded(
    output_file: Path,  # noqa: F811 - the fixture imported above
    definitions: dict[str, Any],  # noqa: F811
) -> AsyncIterator[tuple[TestClient[web.Request, web.Application], Sink]]:
    """The API with an admin token, allowing the dashboard's origin."""
    models, _ = load_file(output_file)
    sink = Sink()
    app = make_app(
        sink,
        FileReadModels(models),
        default_account=definitions["account"],
        tokens=Tokens(admin=ADMIN),
        allow_origins=(DASHBOARD,),
    )
    async with TestClient(TestServer(app)) as client:
        yield client, sink


async def preflight(
    client: TestClient[web.Request, web.Application],
    path: str,
    origin: str,
    method: str,
    **headers: str,
) -> ClientResponse:
    """What a browser asks before a page on `origin` sends `method` to `path`."""
    asking = {"Origin": origin, "Access-Control-Request-Method": method, **headers}
    return await client.options(path, headers=asking)


async def test_a_preflight_from_an_allowed_page_is_answered_without_a_token(
    guarded: tuple[TestClient[web.Request, web.Application], Sink],
) -> None:
    client, sink = guarded
    # given the browser of a page on the dashboard's origin asking before a command
    asked = await preflight(
        client,
        "/sequences/welcome/enrollments",
        DASHBOARD,
        "POST",
        **{"Access-Control-Request-Headers": "authorization, content-type, idempotency-key"},
    )
    # then it may send the command with its token, its body and a key
    assert asked.status == 204
    assert asked.headers["Access-Control-Allow-Origin"] == DASHBOARD
    assert "POST" in asked.headers["Access-Control-Allow-Methods"]
    allowed = asked.headers["Access-Control-Allow-Headers"].lower()
    assert {"authorization", "content-type", "idempotency-key"} <= set(allowed.split(", "))
    assert sink.sent == []
    # and the command itself still needs the token, its answer readable by the page
    refused = await client.post(
        "/sequences/welcome/enrollments", json={"tag": "a"}, headers={"Origin": DASHBOARD}
    )
    assert refused.status == 401
    assert refused.headers["Access-Control-Allow-Origin"] == DASHBOARD
    taken = await client.post(
        "/sequences/welcome/enrollments",
        json={"tag": "a"},
        headers={"Origin": DASHBOARD, "Authorization": f"Bearer {ADMIN}"},
    )
    assert taken.status == 202
    assert taken.headers["Access-Control-Allow-Origin"] == DASHBOARD
    assert "Origin" in taken.headers["Vary"]


async def test_another_origin_gets_no_leave_to_read(
    guarded: tuple[TestClient[web.Request, web.Application], Sink],
) -> None:
    client, _ = guarded
    asked = await preflight(client, "/sequences", "https://evil.example", "GET")
    read = await client.get("/openapi.json", headers={"Origin": "https://evil.example"})
    assert asked.status == 401  # no preflight answer: a request of a method it lacks a token for
    assert read.status == 200
    assert "Access-Control-Allow-Origin" not in asked.headers
    assert "Access-Control-Allow-Origin" not in read.headers


async def test_without_allowed_origins_no_answer_names_one(
    output_file: Path,  # noqa: F811
) -> None:
    models, _ = load_file(output_file)
    async with TestClient(TestServer(make_app(Sink(), FileReadModels(models)))) as client:
        read = await client.get("/sequences", headers={"Origin": DASHBOARD})
        assert read.status == 200
        assert "Access-Control-Allow-Origin" not in read.headers


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    api_cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["api", *argv])


def test_origins_come_from_the_flags_or_else_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(api_cli.ORIGINS_VARIABLE, "https://a.example, https://b.example:8443")
    assert api_cli.origins_of(_parse()) == ("https://a.example", "https://b.example:8443")
    assert api_cli.origins_of(_parse("--allow-origin", "*")) == ("*",)
    # a path is no origin: refused by name, from a flag or the environment
    with pytest.raises(SystemExit):
        _parse("--allow-origin", "https://a.example/app")
    assert "is no origin" in capsys.readouterr().err
    monkeypatch.setenv(api_cli.ORIGINS_VARIABLE, "dashboard.example")
    with pytest.raises(ValueError, match="is no origin") as problem:
        api_cli.origins_of(_parse())
    assert str(problem.value).startswith(
        f"{api_cli.ORIGINS_VARIABLE}: 'dashboard.example' is no origin"
    )
