"""Who may use the HTTP API: the admin token for commands, the read token for the read
models, each asked for only once it is set (the seed: only administrators create sequences)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ops.api_auth import Tokens
from ops.api_cli import is_loopback
from ops.api_read_models import FileReadModels
from ops.cli import build_parser
from ops.http_api import make_app
from projections.loading import load_file
from tests.ops.test_http_api import Sink, definitions, output_file  # noqa: F401 - fixtures

ADMIN, READER = "admin-secret", "reader-secret"
ENROLL = {"tag": "hot"}

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def open_client(output_file: Path) -> AsyncIterator[tuple[Client, Sink]]:  # noqa: F811
    async with _client(output_file, Tokens()) as pair:
        yield pair


@pytest.fixture
async def guarded(output_file: Path) -> AsyncIterator[tuple[Client, Sink]]:  # noqa: F811
    async with _client(output_file, Tokens(admin=ADMIN, read=READER)) as pair:
        yield pair


@asynccontextmanager
async def _client(output: Path, tokens: Tokens) -> AsyncIterator[tuple[Client, Sink]]:
    models, _ = load_file(output)
    sink = Sink()
    async with TestClient(TestServer(make_app(sink, FileReadModels(models), tokens=tokens))) as c:
        yield c, sink


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def enroll(client: Client, **headers: Any) -> tuple[int, dict[str, Any], Any]:
    response = await client.post("/sequences/welcome/enrollments", json=ENROLL, **headers)
    return response.status, await response.json(), response.headers


async def test_without_tokens_set_anyone_may_send_commands(
    open_client: tuple[Client, Sink],
) -> None:
    client, sink = open_client
    status, _, _ = await enroll(client)
    assert status == 202
    assert len(sink.sent) == 1


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        (bearer("guess"), 401),
        ({"Authorization": f"Basic {ADMIN}"}, 401),
        (bearer(READER), 403),
    ],
)
async def test_a_command_without_the_admin_token_is_refused_and_nothing_sent(
    guarded: tuple[Client, Sink], headers: dict[str, str], status: int
) -> None:
    client, sink = guarded
    got, body, answer_headers = await enroll(client, headers=headers)
    assert (got, body["field"]) == (status, "Authorization")
    if status == 401:
        assert answer_headers["WWW-Authenticate"].startswith("Bearer")
    assert sink.sent == []


async def test_the_admin_token_sends_commands_and_reads(guarded: tuple[Client, Sink]) -> None:
    client, sink = guarded
    status, _, _ = await enroll(client, headers=bearer(ADMIN))
    assert status == 202
    assert len(sink.sent) == 1
    assert (await client.get("/sequences", headers=bearer(ADMIN))).status == 200


async def test_reads_need_a_token_once_a_read_token_is_set(guarded: tuple[Client, Sink]) -> None:
    client, _ = guarded
    assert (await client.get("/sequences")).status == 401
    assert (await client.get("/sequences/welcome/history", headers=bearer("x"))).status == 401
    assert (await client.get("/sequences", headers=bearer(READER))).status == 200
    # the document describes, it reveals nothing: always open
    assert (await client.get("/openapi.json")).status == 200


async def test_with_only_an_admin_token_reads_stay_open(output_file: Path) -> None:  # noqa: F811
    async with _client(output_file, Tokens(admin=ADMIN)) as (client, sink):
        assert (await client.get("/sequences")).status == 200
        status, _, _ = await enroll(client)
        assert status == 401
        assert sink.sent == []


def test_the_api_will_not_serve_open_commands_beyond_loopback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DRIPSTREAM_API_ADMIN_TOKEN", raising=False)
    args = build_parser("api").parse_args(
        ["api", "--host", "0.0.0.0", "--database-url", "postgresql://nowhere/x"]
    )
    assert args.handler(args) == 2
    assert "DRIPSTREAM_API_ADMIN_TOKEN" in capsys.readouterr().err


async def test_a_read_token_alone_leaves_no_command_open(output_file: Path) -> None:  # noqa: F811
    async with _client(output_file, Tokens(read=READER)) as (client, sink):
        for headers in ({}, bearer(READER)):
            status, body, _ = await enroll(client, headers=headers)
            assert (status, body["field"]) == (403, "Authorization")
        assert sink.sent == []


def test_the_api_will_not_start_with_a_read_token_and_no_admin_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DRIPSTREAM_API_ADMIN_TOKEN", raising=False)
    monkeypatch.setenv("DRIPSTREAM_API_READ_TOKEN", READER)
    args = build_parser("api").parse_args(["api", "--database-url", "postgresql://nowhere/x"])
    assert args.handler(args) == 2
    assert "set both" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),  # every interface: the case refused
        ("10.1.2.3", False),
        ("api.example.com", False),
    ],
)
def test_only_a_loopback_address_serves_open_commands(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
