"""`dripstream api`: the HTTP API (ops/http_api.py) publishing commands through Kafka and
reading the read models from an output stream file or PostgreSQL."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from ops.api_auth import Tokens
from ops.api_cors import ORIGINS_VARIABLE, origin_problem
from ops.api_errors import ApiError
from ops.api_read_models import FileReadModels, PostgresReadModels, ReadModelSource
from ops.cli_groups import SubParsers
from ops.http_api import Publish, make_app
from ops.service_errors import database_problem, malformed_database_url
from ops.settings import Settings, add_kafka_flags, listen_port, schema_name
from schemas.definitions import DefinitionRejected, account_with_defaults, load_definition_file
from schemas.envelope import STRUCTURED_HEADERS, CloudEvent
from streams.outages import pace, start_quietly

PROG = "dripstream api"


def register(commands: SubParsers) -> None:
    env = Settings.from_environment()
    parser = commands.add_parser(
        "api",
        help="serve the HTTP API (sequence commands to Kafka, the read models as JSON)",
        description="JSON over HTTP; the OpenAPI document is at /openapi.json.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=listen_port, default=8080, help="port (default 8080)")
    parser.add_argument(
        "--history",
        type=Path,
        action="append",
        metavar="FILE",
        help="read models from this output stream (.jsonl); again for more files, read in the"
        " order given (a replay's output, then outcomes); without it, PostgreSQL",
    )
    add_kafka_flags(parser, env, database=True)
    parser.add_argument(
        "--schema",
        type=schema_name,
        default=None,
        help="PostgreSQL schema of the read models (default readmodels)",
    )
    parser.add_argument(
        "--account",
        type=Path,
        metavar="FILE",
        help="a sequence file whose account is sent with definitions that carry none",
    )
    parser.add_argument(
        "--allow-origin",
        action="append",
        metavar="ORIGIN",
        type=allowed_origin,
        help=f"a web page's origin (https://dashboard.example.com) that may call the API from a"
        f" browser; again for more, * for any ({ORIGINS_VARIABLE}: comma-separated)",
    )
    parser.add_argument(
        "--no-auth",
        action="store_true",
        help="serve commands without DRIPSTREAM_API_ADMIN_TOKEN on an address other than"
        " loopback (anyone who reaches it may change and delete sequences)",
    )
    parser.set_defaults(handler=run_api)


ADMIN_TOKEN_VARIABLE = "DRIPSTREAM_API_ADMIN_TOKEN"  # noqa: S105 - a name, not a secret
READ_TOKEN_VARIABLE = "DRIPSTREAM_API_READ_TOKEN"  # noqa: S105 - a name, not a secret


def allowed_origin(text: str) -> str:
    """An origin for argparse's `type=`."""
    if (problem := origin_problem(text)) is not None:
        raise argparse.ArgumentTypeError(problem)
    return text


def origins_of(args: argparse.Namespace) -> tuple[str, ...]:
    """The origins allowed: the flags', else the environment's (ValueError naming the
    variable when one of those is no origin; the flags' were checked as parsed)."""
    if args.allow_origin:
        return tuple(args.allow_origin)
    given = [o.strip() for o in os.environ.get(ORIGINS_VARIABLE, "").split(",") if o.strip()]
    for origin in given:
        if (problem := origin_problem(origin)) is not None:
            raise ValueError(f"{ORIGINS_VARIABLE}: {problem}")
    return tuple(given)


def tokens_from_environment() -> Tokens:
    return Tokens(
        admin=os.environ.get(ADMIN_TOKEN_VARIABLE) or None,
        read=os.environ.get(READ_TOKEN_VARIABLE) or None,
    )


def run_api(args: argparse.Namespace) -> int:
    try:
        args.allow_origin = origins_of(args)
    except ValueError as bad:
        print(f"{PROG}: {bad}", file=sys.stderr)
        return 2
    tokens = tokens_from_environment()
    if tokens.read is not None and tokens.admin is None and args.history is None:
        print(
            f"{PROG}: {READ_TOKEN_VARIABLE} is set without {ADMIN_TOKEN_VARIABLE}: the reads"
            " would be guarded and the commands open; set both",
            file=sys.stderr,
        )
        return 2
    if tokens.admin is None and args.history is None:
        # The seed: only administrators create sequences. Open commands are for a machine
        # of one's own; on a shared address the operator must say so.
        if not is_loopback(args.host) and not args.no_auth:
            print(
                f"{PROG}: set {ADMIN_TOKEN_VARIABLE} (commands need it) or pass --no-auth to serve"
                f" commands to anyone who reaches {args.host}:{args.port}",
                file=sys.stderr,
            )
            return 2
        print(f"{PROG}: {ADMIN_TOKEN_VARIABLE} is not set: commands are open", file=sys.stderr)
    read_models: ReadModelSource
    if args.history is not None:
        try:
            read_models = FileReadModels.load(
                *args.history, say=lambda text: print(f"{PROG}: {text}", file=sys.stderr)
            )
        except OSError as error:
            print(f"{PROG}: cannot read {error.filename}: {error.strerror}", file=sys.stderr)
            return 2
    elif args.database_url:
        malformed = malformed_database_url(args.database_url)
        if malformed is not None:
            # A reachable server may come later (503 meanwhile); a URL that cannot name
            # one gave a 500 on every request.
            print(f"{PROG}: {database_problem(malformed)}", file=sys.stderr)
            return 2
        read_models = PostgresReadModels(args.database_url, args.schema, args.topic_prefix)
        if (problem := _read_models_problem(read_models, args.database_url)) is not None:
            print(f"{PROG}: {problem}", file=sys.stderr)
            return 2
    else:
        print(f"{PROG}: give --history FILE or --database-url / DATABASE_URL", file=sys.stderr)
        return 2
    account = None
    if args.account is not None:
        try:
            account = account_with_defaults(load_definition_file(args.account).get("account"))
        except DefinitionRejected as rejected:
            print(f"{PROG}: {args.account}: {rejected}", file=sys.stderr)
            return 2
    web.run_app(
        _application(args, read_models, account, tokens),
        host=args.host,
        port=args.port,
        print=lambda text: print(text, file=sys.stderr),
    )
    return 0


def _read_models_problem(read_models: PostgresReadModels, url: str) -> str | None:
    """Another deployment's read models, said at the start when PostgreSQL answers (a
    database that comes later is checked at each request: 503 saying the same)."""
    import psycopg  # noqa: PLC0415 - only this source needs a database driver

    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=3) as conn:
            return read_models.mismatch(conn)
    except psycopg.Error:
        return None


async def _application(
    args: argparse.Namespace,
    read_models: ReadModelSource,
    account: dict[str, Any] | None,
    tokens: Tokens,
) -> web.Application:
    """Built inside the running loop, so the producer belongs to the server's loop."""
    if args.history is not None:
        # Over a file the API only reads: a command would go to a broker whose decisions
        # never reach this file, or to one where some worker takes it for real.
        return make_app(
            read_only(args.history),
            read_models,
            default_account=account,
            read_only=read_only_reason(args.history),
            tokens=tokens,
            allow_origins=args.allow_origin,
        )
    producer_box: dict[str, Any] = {}

    async def publish(topic: str, event: CloudEvent) -> None:
        producer = producer_box["producer"]
        key = event.subject.encode() if event.subject else None
        await producer.send_and_wait(
            args.topic_prefix + topic, event.encode(), key=key, headers=STRUCTURED_HEADERS
        )

    app = make_app(
        publish,
        read_models,
        default_account=account,
        tokens=tokens,
        allow_origins=args.allow_origin,
    )

    async def producer_context(_app: web.Application) -> AsyncIterator[None]:
        from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]  # noqa: PLC0415

        producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, enable_idempotence=True)
        pace(producer)
        await start_quietly(producer)
        producer_box["producer"] = producer
        try:
            yield
        finally:
            await producer.stop()

    app.cleanup_ctx.append(producer_context)
    return app


def read_only(history: list[Path]) -> Publish:
    """The publisher of an API over a file: every command is refused (405)."""

    async def refuse(_topic: str, _event: CloudEvent) -> None:
        raise ApiError(405, read_only_reason(history), None)

    return refuse


def read_only_reason(history: list[Path]) -> str:
    files = ", ".join(str(path) for path in history)
    return (
        f"read-only: this API serves the file{'s' if len(history) > 1 else ''} {files};"
        " commands need the live mode (DATABASE_URL, Kafka)"
    )


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: only this machine can reach it."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to any address
