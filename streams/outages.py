"""What a lost PostgreSQL or Kafka broker raises (a restart, a failover, a network cut).

The worker and the relay wait and start again from what the store and the relay's position
say, rather than stop: both are exact after any interruption, so waiting out an outage costs
time, never a decision. Other errors (a bug, a record the broker refuses for its size) still
stop them loudly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from aiokafka.client import AIOKafkaClient  # type: ignore[import-untyped]
from aiokafka.errors import (  # type: ignore[import-untyped]
    CoordinatorLoadInProgressError,
    CoordinatorNotAvailableError,
    KafkaConnectionError,
    KafkaTimeoutError,
    LeaderNotAvailableError,
    NodeNotReadyError,
    NotCoordinatorForGroupError,
    NotEnoughReplicasAfterAppendError,
    NotEnoughReplicasError,
    NotLeaderForPartitionError,
    RequestTimedOutError,
)
from eventsourcing.persistence import (
    ConnectionUnavailableError,
    InterfaceError,
    OperationalError,
)

# psycopg's OperationalError covers a refused or dropped connection, a server shutting down
# (AdminShutdown) and a pool that found none in time (PoolTimeout); eventsourcing wraps the
# same in its own classes.
DATABASE_LOST: tuple[type[Exception], ...] = (
    psycopg.OperationalError,
    OperationalError,
    InterfaceError,
    ConnectionUnavailableError,
)
# A broker starting again answers for a while that it leads no partition, coordinates no
# group or lacks its replicas yet: the same outage, ending (an effects processor whose
# outcome met one stopped, in the broker-restart audit). A topic that is gone is no outage.
BROKER_LOST: tuple[type[Exception], ...] = (
    KafkaConnectionError,
    KafkaTimeoutError,
    RequestTimedOutError,
    LeaderNotAvailableError,
    NotLeaderForPartitionError,
    NodeNotReadyError,
    NotEnoughReplicasError,
    NotEnoughReplicasAfterAppendError,
    CoordinatorNotAvailableError,
    CoordinatorLoadInProgressError,
    NotCoordinatorForGroupError,
)
OUTAGES = DATABASE_LOST + BROKER_LOST


def is_outage(error: BaseException) -> bool:
    """Whether `error` is an outage (OUTAGES), or was raised because of one: a Kafka
    producer's sender that meets a closed connection while it looks for its transaction
    coordinator dies with a plain KafkaError ("Unexpected error during batch delivery")
    raised from the connection's error, and the next send or commit raises that. Only a
    cause given with `raise ... from` counts: a bug met while handling an outage must
    still stop the service."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, OUTAGES):
            return True
        seen.add(id(cause))
        cause = cause.__cause__
    return False


FIRST_WAIT = 0.5  # seconds before the first try again
LONGEST_WAIT = 10.0  # the wait doubles up to this
FRESH_AFTER = 10.0  # a run longer than this meets its next outage with FIRST_WAIT again


def next_wait(wait: float) -> float:
    return min(wait * 2, LONGEST_WAIT)


class RepeatLimit(logging.Filter):
    """At most one record a `period` per logger and message template of a client library
    (loggers named `prefix...`); the next one let through says how many were held back. A
    broker that is down makes aiokafka log each failed connection, about 90 a second."""

    def __init__(
        self,
        prefix: str = "aiokafka",
        period: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._prefix = prefix
        self._period = period
        self._clock = clock
        self._last: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self._prefix):
            return True
        key = (record.name, str(record.msg))
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._period:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        self._last[key] = now
        held = self._held.pop(key, 0)
        if held:
            record.msg = f"{record.msg} (and {held} more like it in the last {self._period:g} s)"
        return True


SERVICE_LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def log_as_service(log_format: str = SERVICE_LOG_FORMAT) -> None:
    """A service process's log: INFO and above on stderr in `log_format`, the client
    library's repeated records limited by one RepeatLimit on every root handler (a filter on
    the `aiokafka` logger would not see its children's records)."""
    logging.basicConfig(level=logging.INFO, format=log_format)
    limit = RepeatLimit()
    for handler in logging.getLogger().handlers:
        handler.addFilter(limit)


def one_line(error: BaseException) -> str:
    """An error's message on one line (psycopg's span several), else its class's name."""
    return " ".join(str(error).split()) or type(error).__name__


async def sleep_unless_stopped(stopping: asyncio.Event, seconds: float) -> None:
    """Wait `seconds`, or less when `stopping` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), timeout=seconds)


async def run_through_outages(
    run: Callable[[], Awaitable[None]],
    stopping: asyncio.Event,
    what: str,
    log: logging.Logger,
) -> None:
    """`run` until it returns, started again after each outage (`is_outage`; any other
    error stops it): the first try again after FIRST_WAIT, each next one of the same outage after
    twice as long up to LONGEST_WAIT, and a run that lasted longer than FRESH_AFTER meets
    its next outage afresh. Told to stop during an outage, it raises the outage's error:
    what is left undone stays where the next process finds it."""
    wait = FIRST_WAIT
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        try:
            await run()
            return
        except Exception as error:
            if not is_outage(error):
                raise
            if loop.time() - started > FRESH_AFTER:
                wait = FIRST_WAIT
            if stopping.is_set():
                raise
            log.warning("%s lost its connection (%s); again in %.1f s", what, one_line(error), wait)
        await sleep_unless_stopped(stopping, wait)
        wait = next_wait(wait)


async def stop_client(client: Any) -> None:
    """Stop an aiokafka consumer or producer on the way out of a run. With the broker away,
    stop() may raise the CancelledError of the client's own tasks, though nobody cancelled
    the caller: that would end a service in the middle of waiting out the outage, so it is
    swallowed; a cancellation of the caller itself goes on."""
    try:
        await client.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise


async def start_quietly(client: Any) -> None:
    """Start an aiokafka client for a service whose start must reach the broker: a broker
    that cannot be reached gives one line (`service_problem`), not the client's log of the
    failed connection before it and its "Unclosed" warning after. Once started, the client
    logs a broker coming and going as usual."""
    kafka_log = logging.getLogger("aiokafka")
    level = kafka_log.level
    kafka_log.setLevel(logging.CRITICAL)
    try:
        await client.start()
    except BaseException:
        # A consumer or producer stops; the admin client has only close().
        await (client.stop() if hasattr(client, "stop") else client.close())
        raise
    finally:
        kafka_log.setLevel(level)


class _PacedMetadataClient(AIOKafkaClient):  # type: ignore[misc]
    """aiokafka's client, waiting `retry_backoff_ms` after a metadata refresh that failed.

    A producer with records for a partition whose leader it does not know (a broker that
    stops says it leads none, and one that is down says nothing newer) asks for metadata
    and waits for that answer alone (aiokafka 0.14 producer/sender.py, `_sender_routine`),
    though its comment says it waits the backoff. With no broker the refresh fails at once
    on a refused connection (client.py, `_metadata_update`) and the loop goes again: about
    2,700 refused connections a second, a whole core for as long as the outage lasts. The
    consumer's fetcher waits on a refresh the same way. Java's client backs off
    retry.backoff.ms after a failed refresh; so does this, for every waiter at once (they
    all wait on the one refresh)."""

    async def _metadata_update(self, cluster_metadata: Any, topics: Any) -> bool:
        updated = bool(await super()._metadata_update(cluster_metadata, topics))
        if not updated:
            await asyncio.sleep(self._retry_backoff)
        return updated


def pace(client: Any) -> None:
    """Have an aiokafka producer or consumer, before its start(), wait the backoff after a
    failed metadata refresh (_PacedMetadataClient) rather than spin. Its client object stays
    the same one, made of the subclass: nothing of aiokafka changes for other clients."""
    for name in ("client", "_client"):  # the producer's, the consumer's
        inner = getattr(client, name, None)
        if type(inner) is AIOKafkaClient:
            inner.__class__ = _PacedMetadataClient
