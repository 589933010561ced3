"""What a lost PostgreSQL or Kafka broker raises (a restart, a failover, a network cut).

The worker and the relay wait and start again from what the store and the relay's position
say, rather than stop: both are exact after any interruption, so waiting out an outage costs
time, never a decision. Other errors (a bug, a record the broker refuses for its size) still
stop them loudly.
"""

from __future__ import annotations

import psycopg
from aiokafka.errors import (  # type: ignore[import-untyped]
    KafkaConnectionError,
    KafkaTimeoutError,
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
BROKER_LOST: tuple[type[Exception], ...] = (
    KafkaConnectionError,
    KafkaTimeoutError,
    RequestTimedOutError,
)
OUTAGES = DATABASE_LOST + BROKER_LOST

FIRST_WAIT = 0.5  # seconds before the first try again
LONGEST_WAIT = 10.0  # the wait doubles up to this


def next_wait(wait: float) -> float:
    return min(wait * 2, LONGEST_WAIT)
