"""Configuration read once from the environment into frozen settings (the composition root)."""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_PREFIX = "dripstream."
PREFIX_HELP = f"topic name prefix (DRIPSTREAM_TOPIC_PREFIX, default {DEFAULT_PREFIX})"


@dataclass(frozen=True, slots=True)
class Settings:
    bootstrap_servers: str
    database_url: str | None
    topic_prefix: str

    @classmethod
    def from_environment(cls) -> Settings:
        return cls(
            # A variable set but empty (`KAFKA_BOOTSTRAP_SERVERS=`) means "not set".
            bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or DEFAULT_BOOTSTRAP,
            database_url=os.environ.get("DATABASE_URL") or None,
            # An empty prefix is a choice: topics named `contacts`, `decisions`, ...
            topic_prefix=os.environ.get("DRIPSTREAM_TOPIC_PREFIX", DEFAULT_PREFIX),
        )


def bootstrap_servers(text: str) -> str:
    """`host:port[,host:port…]`, for argparse's `type=`: a port that is no number, or out of
    range, is a usage error here rather than a traceback from the client's first connect."""
    for address in text.split(","):
        host, colon, port = address.strip().rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise argparse.ArgumentTypeError(
                f"{address.strip()!r} is not host:port with a port from 1 to 65535"
            )
    return text


# Kafka's topic names: these characters, at most 249; the longest suffix the prefix takes
# is `relay-position`.
_TOPIC_CHARACTERS = re.compile(r"[A-Za-z0-9._-]*")
_LONGEST_SUFFIX = len("relay-position")
_SCHEMA = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def topic_prefix_problem(prefix: str) -> str | None:
    """Why topics named `prefix` + a topic cannot exist (the clients would wait for ever
    for metadata of a topic the broker refuses to make); None when they can."""
    if not _TOPIC_CHARACTERS.fullmatch(prefix):
        return f"{prefix!r}: a topic prefix takes only letters, digits, '.', '_' and '-'"
    if len(prefix) + _LONGEST_SUFFIX > 249:
        return f"a topic prefix of at most {249 - _LONGEST_SUFFIX} characters, got {len(prefix)}"
    return None


def topic_prefix(text: str) -> str:
    """A topic prefix, for argparse's `type=` (DRIPSTREAM_TOPIC_PREFIX is checked as the
    default it gives)."""
    if (problem := topic_prefix_problem(text)) is not None:
        raise argparse.ArgumentTypeError(f"{problem} (DRIPSTREAM_TOPIC_PREFIX, --topic-prefix)")
    return text


def schema_name(text: str) -> str:
    """A PostgreSQL schema of dripstream's tables, for argparse's `type=`: a plain name, not
    one of PostgreSQL's own (`pg_…`)."""
    if not _SCHEMA.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a plain PostgreSQL name (a letter or _, then letters, digits, _;"
            " at most 63)"
        )
    if text.lower().startswith("pg_"):
        raise argparse.ArgumentTypeError(f"{text!r}: names starting pg_ are PostgreSQL's own")
    return text


def whole_number(text: str) -> int:
    """A count of rows, items, … (0 or more), for argparse's `type=`."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def at_least_one(text: str) -> int:
    """A count of partitions, replicas, processes, … (1 or more), for argparse's `type=`."""
    value = whole_number(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def processes(text: str) -> int:
    """A count of worker processes, for argparse's `type=`: at least 1, and not so many
    that they only take the cores from each other (four a core; eight at least)."""
    value = at_least_one(text)
    most = max(8, 4 * (os.cpu_count() or 1))
    if value > most:
        raise argparse.ArgumentTypeError(
            f"{value} processes on {os.cpu_count()} core(s): at most {most} (one a core is best)"
        )
    return value


def listen_port(text: str) -> int:
    """A TCP port to serve on, for argparse's `type=`."""
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port from 1 to 65535")
    return int(text)


def add_kafka_flags(
    parser: argparse.ArgumentParser, env: Settings, *, database: bool = False
) -> None:
    """--bootstrap and --topic-prefix (and --database-url), defaulting to the environment:
    the same words on every command that reaches the broker."""
    parser.add_argument(
        "--bootstrap",
        type=bootstrap_servers,
        default=env.bootstrap_servers,
        help="Kafka bootstrap servers (KAFKA_BOOTSTRAP_SERVERS)",
    )
    parser.add_argument(
        "--topic-prefix", type=topic_prefix, default=env.topic_prefix, help=PREFIX_HELP
    )
    if database:
        parser.add_argument(
            "--database-url", default=env.database_url, help="PostgreSQL URL (DATABASE_URL)"
        )
