"""One line, not a traceback, when a command cannot reach Kafka or PostgreSQL: the usual
first-run mistakes (the broker not started, a wrong DATABASE_URL) deserve a plain answer."""

from __future__ import annotations

import errno
import logging
import os
import socket
from collections.abc import Iterator


def quiet_kafka_client() -> None:
    """For a one-shot command: the client's own log of each failed connection would come
    before, and say less clearly, the one line `service_problem` gives. Services (worker,
    effects, projections) keep it: there it tells of a broker coming and going."""
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _is(error: BaseException, module: str, *names: str) -> bool:
    kind = type(error)
    return kind.__module__.startswith(module) and kind.__name__ in names


def service_problem(
    error: BaseException, *, bootstrap: str | None = None, database_url: str | None = None
) -> str | None:
    """What to say when `error` (or what caused it) is an unreachable broker or database;
    None for any other error, which is a bug to show in full."""
    chain = list(_chain(error))
    if any(_is(e, "aiokafka", "KafkaConnectionError") for e in chain):
        where = bootstrap or os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or "the bootstrap servers"
        return (
            f"cannot reach Kafka at {where} (KAFKA_BOOTSTRAP_SERVERS, --bootstrap): "
            "is the broker running?"
        )
    database = [
        e
        for e in chain
        if _is(e, "psycopg", "OperationalError", "PoolTimeout")
        or _is(e, "eventsourcing", "OperationalError")
    ]
    if not database:
        return None
    # A pool only says it timed out; one plain connection says why (a wrong password, a
    # refused port, no such database).
    url = database_url or os.environ.get("DATABASE_URL")
    reason = connect_problem(url) if url else None
    return database_problem(reason or str(database[-1]))


def machine_problem(error: BaseException) -> str | None:
    """What to say when the machine refused what a command asked of it: a port to listen on
    that another process holds or an address not this machine's (a usage error, like a bad
    bootstrap address), or a full disk; None for anything else, a bug to show in full."""
    if isinstance(error, socket.gaierror):
        reason = error.strerror or str(error)
        return f"cannot listen on that address: {reason} (--host, --metrics-host, --http-host)"
    if isinstance(error, OverflowError) and "port" in str(error):
        return f"cannot listen: {error} (--port, --metrics-port, --http-port)"
    if not isinstance(error, OSError):
        return None
    if error.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES) and not error.filename:
        return (
            f"cannot listen: {error.strerror} (a port another process holds, or an address not"
            " this machine's: --port, --metrics-port, --http-port, --host)"
        )
    if error.errno == errno.ENOSPC:
        where = error.filename or "the output"
        return f"cannot write {where}: {error.strerror}"
    return None


def database_problem(reason: str) -> str:
    """The one line for a failed connection: psycopg's own message spans lines."""
    flat = " ".join(reason.split())
    return f"cannot connect to PostgreSQL: {flat} (DATABASE_URL, --database-url)"


def malformed_database_url(url: str) -> str | None:
    """Why `url` names no PostgreSQL server (not a connection string at all), or None."""
    import psycopg  # noqa: PLC0415 - the ops layer's errors import nothing up front

    try:
        psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as error:
        return str(error)
    return None


def connect_problem(url: str) -> str | None:
    import psycopg  # noqa: PLC0415 - the ops layer imports it only where it connects

    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.Error as error:
        return str(error)
    return None
