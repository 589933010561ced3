"""Addresses and ports a service cannot use are usage errors (exit 2, one line), not a
traceback from the client's first connect or the server's bind."""

from __future__ import annotations

import pytest

from ops.cli import build_parser, main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["worker", "--bootstrap", "127.0.0.1:99999"],
            "argument --bootstrap: '127.0.0.1:99999' is not host:port with a port from 1 to 65535",
        ),
        (
            ["produce", "f.jsonl", "--bootstrap", "a:9092,host:abc"],
            "argument --bootstrap: 'host:abc' is not host:port with a port from 1 to 65535",
        ),
        (
            ["effects", "--bootstrap", "localhost"],
            "argument --bootstrap: 'localhost' is not host:port with a port from 1 to 65535",
        ),
        (
            ["projections", "run", "--bootstrap", ":9092"],
            "argument --bootstrap: ':9092' is not host:port with a port from 1 to 65535",
        ),
        (["worker", "--metrics-port", "-1"], "argument --metrics-port: '-1' is not a port"),
        (["effects", "--http-port", "70000"], "argument --http-port: '70000' is not a port"),
        (["api", "--port", "0"], "argument --port: '0' is not a port from 1 to 65535"),
        (["worker", "--processes", "0"], "argument --processes: must be at least 1"),
    ],
)
def test_an_address_or_port_no_service_can_use_is_a_usage_error(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(argv)
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("servers", ["127.0.0.1:9092", "a:1,b:65535", "broker-1.example:9093"])
def test_bootstrap_servers_as_kafka_writes_them_are_taken(servers: str) -> None:
    assert build_parser().parse_args(["worker", "--bootstrap", servers]).bootstrap == servers


def test_the_api_refuses_a_database_url_that_names_no_server(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # It started, and answered every request with a 500 (an unreachable server gets 503s
    # until it answers; this one never could).
    status = main(["api", "--port", "19499", "--database-url", "notaurl"])
    assert status == 2
    assert 'cannot connect to PostgreSQL: missing "=" after "notaurl"' in capsys.readouterr().err
