"""`dripstream projections run`: keep the PostgreSQL read models current from the output topics."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import TYPE_CHECKING, Any

from ops.cli_groups import SubParsers, get_or_create_group
from ops.service_errors import database_problem
from ops.settings import (
    PREFIX_HELP,
    Settings,
    bootstrap_servers,
    schema_name,
    topic_prefix,
    topic_prefix_problem,
)

if TYPE_CHECKING:
    from psycopg import Connection

    from projections.postgres import PostgresProjection
    from streams.projector import ProjectorSettings

PROG = "dripstream"


def register(commands: SubParsers) -> None:
    projections = get_or_create_group(commands, "projections", help="the read models in PostgreSQL")
    parser = projections.add_parser(
        "run",
        help="keep the read models current from the output topics",
        description="Read the output topics (decisions, effects, contacts, outcomes) as they "
        "grow and apply them to the read models in PostgreSQL, each poll in one transaction "
        "with the offsets it reached; a restart resumes there. Stop with SIGTERM or Ctrl-C.",
    )
    parser.add_argument(
        "--bootstrap",
        type=bootstrap_servers,
        default=Settings.from_environment().bootstrap_servers,
        help="Kafka bootstrap servers (KAFKA_BOOTSTRAP_SERVERS)",
    )
    parser.add_argument("--topic-prefix", type=topic_prefix, help=PREFIX_HELP)
    parser.add_argument("--database-url", metavar="URL", help="PostgreSQL (DATABASE_URL)")
    parser.add_argument(
        "--schema", type=schema_name, default="readmodels", help="schema of the read models"
    )
    parser.add_argument(
        "--reset",
        action="store_true",
        help="empty the read models first and read the topics from their beginning (needed "
        "once over read models loaded from a file)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import psycopg  # noqa: PLC0415 - heavy imports, only for this command

    from projections.deployment import claim  # noqa: PLC0415
    from projections.pg_tables import OlderLayoutError  # noqa: PLC0415
    from projections.postgres import (  # noqa: PLC0415
        PostgresProjection,
        ReadModelsFromFileError,
        ReadModelsTakenError,
    )
    from streams.outages import log_as_service  # noqa: PLC0415 - heavy imports
    from streams.projector import ProjectorSettings  # noqa: PLC0415

    log_as_service("%(asctime)s %(levelname)s %(name)s: %(message)s")
    env = Settings.from_environment()
    url = args.database_url or env.database_url
    if not url:
        print(f"{PROG}: no PostgreSQL: set DATABASE_URL or --database-url", file=sys.stderr)
        return 2
    prefix = args.topic_prefix if args.topic_prefix is not None else env.topic_prefix
    if (problem := topic_prefix_problem(prefix)) is not None:
        print(f"{PROG}: DRIPSTREAM_TOPIC_PREFIX: {problem}", file=sys.stderr)
        return 2
    settings = ProjectorSettings(
        bootstrap_servers=args.bootstrap, topic_prefix=prefix, schema=args.schema
    )
    try:
        conn = psycopg.connect(url, autocommit=True)
    except psycopg.Error as error:
        print(f"{PROG}: {database_problem(str(error))}", file=sys.stderr)
        return 2
    with conn:
        projection = PostgresProjection(conn, schema=args.schema)
        try:
            projection.ensure_schema()
        except OlderLayoutError as error:
            print(f"{PROG}: {error}", file=sys.stderr)
            return 2
        if args.reset:
            # Taken before the tables are emptied: a projector of the prefix that had them,
            # still running, sees the claim gone at its next batch and stops, rather than
            # writing into the emptied tables first.
            claim(conn, args.schema, settings.topic_prefix, take=True)
            projection.reset()
        elif projection.position() and not projection.offsets():
            _refuse_file_models(args.schema)
            return 2
        others = sorted({topic for topic, _ in projection.offsets()} - set(settings.topics))
        if others:
            # Another deployment's read models (another topic prefix): mixing the two would
            # count each one's enrollments in the other's pages.
            print(
                f"{PROG}: the read models in schema {args.schema!r} follow other topics"
                f" ({', '.join(others)}), not {settings.topic_prefix!r}'s: give each"
                " deployment its own --schema, or --reset to rebuild them from these topics",
                file=sys.stderr,
            )
            return 2
        served = claim(conn, args.schema, settings.topic_prefix, take=args.reset)
        if served != settings.topic_prefix:
            # Another prefix's projector took the schema, maybe before it read anything.
            print(
                f"{PROG}: the read models in schema {args.schema!r} follow the topic prefix"
                f" {served!r}, not {settings.topic_prefix!r}: give each deployment its own"
                " --schema, or --reset to rebuild them from these topics",
                file=sys.stderr,
            )
            return 2
        projection.follows = settings.topic_prefix
        try:
            return asyncio.run(_run(settings, projection, url))
        except ReadModelsFromFileError:
            # `projections rebuild` replaced the tables while this ran.
            _refuse_file_models(args.schema)
            return 2
        except ReadModelsTakenError as taken:
            # Another prefix's `projections run --reset` took the schema while this ran.
            print(
                f"{PROG}: {taken}: this projector stops; give each deployment its own --schema",
                file=sys.stderr,
            )
            return 2


def _refuse_file_models(schema: str) -> None:
    print(
        f"{PROG}: the read models in schema {schema!r} were loaded from a file, not from the"
        " topics: run with --reset to rebuild them from the topics (or use another --schema)",
        file=sys.stderr,
    )


async def _run(settings: ProjectorSettings, projection: PostgresProjection, url: str) -> int:
    """Project until told to stop. A lost PostgreSQL is waited out: on a new connection the
    projector joins its group again and resumes from the offsets stored with the rows."""
    from streams.outages import DATABASE_LOST, one_line  # noqa: PLC0415
    from streams.projector import run_projector  # noqa: PLC0415

    log = logging.getLogger(__name__)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    applied = 0
    opened: list[Connection[Any]] = []  # the connections made here, closed here
    try:
        current: PostgresProjection | None = projection
        while current is not None:
            try:
                applied += await run_projector(settings, current, stop)
                break
            except DATABASE_LOST as error:
                if stop.is_set():
                    raise
                log.warning("lost PostgreSQL (%s)", one_line(error))
            current = await _reconnected(current, url, stop, opened)
    finally:
        for conn in opened:
            conn.close()
    log.info("stopped; %d new events applied", applied)
    return 0


async def _reconnected(
    lost: PostgresProjection, url: str, stop: asyncio.Event, opened: list[Connection[Any]]
) -> PostgresProjection | None:
    """The read models on a new connection, once PostgreSQL answers again (waiting 0.5 s,
    then longer, up to 10 s); None when told to stop first."""
    from projections.postgres import PostgresProjection  # noqa: PLC0415
    from streams.outages import (  # noqa: PLC0415
        DATABASE_LOST,
        FIRST_WAIT,
        next_wait,
        one_line,
        sleep_unless_stopped,
    )

    wait = FIRST_WAIT
    while True:
        await sleep_unless_stopped(stop, wait)
        if stop.is_set():
            return None
        try:
            conn: Connection[Any] = await asyncio.to_thread(_connect, url)
        except DATABASE_LOST as error:
            logging.getLogger(__name__).warning("PostgreSQL still away (%s)", one_line(error))
            wait = next_wait(wait)
            continue
        opened.append(conn)
        again = PostgresProjection(conn, schema=lost.schema)
        again.follows = lost.follows
        return again


def _connect(url: str) -> Connection[Any]:
    import psycopg  # noqa: PLC0415

    return psycopg.connect(url, autocommit=True)
