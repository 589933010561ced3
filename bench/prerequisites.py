"""A benchmark whose broker or database is not there says so in one line, naming what it
tried, instead of a traceback (the README's commands default to this machine's services)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import psycopg
from aiokafka.errors import KafkaConnectionError  # type: ignore[import-untyped]

from schemas.definitions import DefinitionRejected


def run_main(main: Callable[[], int | None]) -> int:
    """`main()`'s exit code; 2 with a line on stderr when a prerequisite is missing."""
    name = Path(sys.argv[0]).stem
    try:
        return main() or 0
    except psycopg.OperationalError as error:
        reason = " ".join(str(error).split())
        print(f"{name}: cannot use PostgreSQL ({reason}); see bench/README.md", file=sys.stderr)
    except KafkaConnectionError as error:
        print(
            f"{name}: cannot reach the Kafka broker ({error}); see bench/README.md", file=sys.stderr
        )
    except (DefinitionRejected, FileNotFoundError) as error:
        print(f"{name}: {error}", file=sys.stderr)
    return 2
