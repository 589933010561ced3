"""A broker or database that cannot be reached, a port in use, a full disk: one line naming
it, exit 2, no traceback."""

from __future__ import annotations

import errno
import socket
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from aiokafka.errors import KafkaConnectionError  # type: ignore[import-untyped]

from ops.cli import main
from ops.service_errors import machine_problem, service_problem

BROKER_DOWN = (
    "dripstream: cannot reach Kafka at 127.0.0.1:1 (KAFKA_BOOTSTRAP_SERVERS, --bootstrap):"
    " is the broker running?"
)


def _dripstream(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI in a process of its own: the Kafka client's own log lines would go to the
    real stderr, and the test checks all of stderr."""
    return subprocess.run(
        [sys.executable, "-m", "ops.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
        env=env,
    )


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


def test_produce_to_a_broker_that_is_down_says_one_line_and_nothing_else(tmp_path: Path) -> None:
    # A process of its own: the Kafka client's own log lines would go to the real stderr.
    events = tmp_path / "events.jsonl"
    events.write_text(
        '{"specversion":"1.0","id":"e-1","source":"crm","type":"contact.created",'
        '"time":"2027-07-02T20:30:00Z","subject":"c-1","data":{"contact_id":"c-1"}}\n'
    )
    done = _dripstream("produce", str(events), "--bootstrap", "127.0.0.1:1")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "dripstream: cannot reach Kafka at 127.0.0.1:1 (KAFKA_BOOTSTRAP_SERVERS, --bootstrap):"
        " is the broker running?"
    ]


def test_a_read_model_command_whose_database_is_down_says_one_line_naming_it() -> None:
    # psycopg's own message spans two lines; the answer is one, naming where it looked.
    done = _dripstream(
        "history",
        "welcome",
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": "postgresql://x:y@127.0.0.1:1/x"},
    )
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith("dripstream: cannot connect to PostgreSQL: ")
    assert line.endswith("(DATABASE_URL, --database-url)")


def test_effects_whose_database_is_down_says_one_line_before_any_retry() -> None:
    # The ledger's pool would retry for its whole timeout, a warning at each attempt; the
    # lease connects first and answers at once. (Kafka is never reached: the ledger opens
    # before the consumer, so an unused broker address is fine here.)
    done = _dripstream(
        "effects",
        env={
            "PATH": "/usr/bin:/bin",
            "DATABASE_URL": "postgresql://x:y@127.0.0.1:1/x",
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        },
    )
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith("dripstream: cannot connect to PostgreSQL: ")


def test_effects_on_kafka_without_a_durable_ledger_is_refused() -> None:
    # in memory, a command redelivered after a restart would be carried out again
    done = _dripstream(
        "effects", env={"PATH": "/usr/bin:/bin", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    )
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith("dripstream effects: set DATABASE_URL or --database-url: ")


def test_effects_without_a_broker_at_its_start_says_so_in_one_line() -> None:
    # It rides out a broker lost while it runs, and so waited for ever for one that was
    # never there (no database: the ledger is kept in memory).
    done = _dripstream(
        "effects",
        "--memory-ledger",
        env={"PATH": "/usr/bin:/bin", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"},
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [BROKER_DOWN]


@pytest.mark.parametrize(
    ("command", "first"),
    [
        (["worker"], []),
        (["api"], ["dripstream api: DRIPSTREAM_API_ADMIN_TOKEN is not set: commands are open"]),
    ],
    ids=["worker", "api"],
)
def test_a_service_without_a_broker_at_its_start_says_so_in_one_line(
    command: list[str], first: list[str]
) -> None:
    # Not the client's log of the failed connection before it, nor its "Unclosed" warning
    # after it. (The database is never reached: the broker is asked first.)
    done = _dripstream(
        *command,
        env={
            "PATH": "/usr/bin:/bin",
            "DATABASE_URL": "postgresql://x:y@127.0.0.1:1/x",
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        },
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [*first, BROKER_DOWN]


def test_topics_dump_from_a_broker_that_is_down_says_one_line_and_nothing_else() -> None:
    done = _dripstream("topics", "dump", "--bootstrap", "127.0.0.1:1")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "dripstream: cannot reach Kafka at 127.0.0.1:1 (KAFKA_BOOTSTRAP_SERVERS, --bootstrap):"
        " is the broker running?"
    ]


def test_a_port_in_use_an_unknown_host_and_a_full_disk_are_one_line_each() -> None:
    in_use = OSError(errno.EADDRINUSE, "error while attempting to bind: address already in use")
    assert (machine_problem(in_use) or "").startswith("cannot listen: error while attempting")
    unknown = socket.gaierror(-2, "Name or service not known")
    assert machine_problem(unknown) == (
        "cannot listen on that address: Name or service not known"
        " (--host, --metrics-host, --http-host)"
    )
    full = OSError(errno.ENOSPC, "No space left on device")
    assert machine_problem(full) == "cannot write the output: No space left on device"
    # anything else is a bug, shown in full
    assert machine_problem(OSError(errno.ENOENT, "No such file", "x")) is None
    assert machine_problem(ValueError("port")) is None
