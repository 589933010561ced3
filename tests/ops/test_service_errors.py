"""A broker or database that cannot be reached: one line naming it, exit 2, no traceback."""

from __future__ import annotations

import psycopg
import pytest
from aiokafka.errors import KafkaConnectionError  # type: ignore[import-untyped]

from ops.cli import main
from ops.service_errors import service_problem


def test_a_command_whose_broker_is_down_says_so_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = main(["topics", "create", "--bootstrap", "127.0.0.1:1", "--topic-prefix", "x."])

    err = capsys.readouterr().err
    assert status == 2
    assert "dripstream: cannot reach Kafka at 127.0.0.1:1" in err
    assert "Traceback" not in err


def test_a_database_error_deep_in_the_chain_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    try:
        try:
            raise psycopg.OperationalError("connection refused")
        except psycopg.OperationalError as cause:
            raise RuntimeError("the store could not start") from cause
    except RuntimeError as error:
        problem = service_problem(error)
    assert problem == (
        "cannot connect to PostgreSQL: connection refused (DATABASE_URL, --database-url)"
    )


def test_other_errors_are_left_to_show_in_full() -> None:
    assert service_problem(ValueError("a bug")) is None
    assert service_problem(KafkaConnectionError("x")) is not None
