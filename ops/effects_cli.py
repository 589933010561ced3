"""`dripstream effects`: run the effect processors (on Kafka, or over a .jsonl of commands)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from effects.settings import EffectsSettings, SettingsError, environment_variables
from ops.service_errors import connect_problem, database_problem
from ops.settings import (
    PREFIX_HELP,
    Settings,
    bootstrap_servers,
    listen_port,
    topic_prefix,
    topic_prefix_problem,
)

HELP_ENV = ", ".join(sorted(set(environment_variables().values())))


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "effects",
        help="run the effect processors (SMS, e-mail, calls, voicemail, webhooks)",
        description=(
            "Carry out effect commands at most once (ledger in PostgreSQL when DATABASE_URL "
            "is set) and serve the providers' callbacks. Environment: " + HELP_ENV + "."
        ),
    )
    parser.add_argument(
        "--bootstrap",
        type=bootstrap_servers,
        default=Settings.from_environment().bootstrap_servers,
        help="Kafka bootstrap servers (KAFKA_BOOTSTRAP_SERVERS)",
    )
    parser.add_argument("--database-url", help="PostgreSQL URL of the ledger (DATABASE_URL)")
    parser.add_argument(
        "--schema",
        help=(
            "PostgreSQL schema of the ledger and the power-dialer lists (EFFECTS_SCHEMA;"
            " default: the connection's search path, normally public); one per deployment"
            " sharing a database"
        ),
    )
    parser.add_argument("--http-port", type=listen_port, help="port of the callback server")
    parser.add_argument("--http-host", help="address the callback server listens on")
    parser.add_argument("--public-url", help="base URL providers reach the callbacks at")
    parser.add_argument(
        "--metrics-port",
        type=listen_port,
        help=(
            "serve /metrics on a listener of its own on PORT (EFFECTS_METRICS_PORT), not on"
            " the callback server providers reach"
        ),
    )
    parser.add_argument(
        "--metrics-host",
        help="the address --metrics-port listens on (EFFECTS_METRICS_HOST; default 127.0.0.1)",
    )
    parser.add_argument("--topic-prefix", type=topic_prefix, help=PREFIX_HELP)
    parser.add_argument(
        "--consumer-group",
        help="Kafka consumer group (EFFECTS_CONSUMER_GROUP; default <topic prefix>effects)",
    )
    parser.add_argument("--concurrency", type=int, help="sends in progress at once")
    parser.add_argument("--line-rate", type=float, help="messages per second per line")
    parser.add_argument(
        "--commands",
        type=Path,
        help=(
            "carry out the commands of this .jsonl instead of consuming Kafka (other events "
            "in it, such as a replay's decisions, are skipped)"
        ),
    )
    parser.add_argument(
        "--outcomes", type=Path, help="with --commands: append outcomes here (default stdout)"
    )
    parser.add_argument(
        "--memory-ledger",
        action="store_true",
        help=(
            "keep the ledger in memory, DATABASE_URL set or not (a try-out: after a restart,"
            " or a lost broker, commands carried out before are carried out again)"
        ),
    )
    parser.set_defaults(handler=run)


# Consuming Kafka, a command comes back after a crash or a rebalance before its offset was
# committed: only a ledger that outlives the process knows it was carried out already.
NO_LEDGER = (
    "set DATABASE_URL or --database-url: the ledger that carries out each command once must"
    " outlive this process (in memory, a restart sends again what it sent); --memory-ledger"
    " runs without one, for a try-out"
)


def settings_from(args: argparse.Namespace) -> EffectsSettings:
    base = EffectsSettings.from_env(checked=False)
    overrides: dict[str, Any] = {
        "kafka_bootstrap_servers": args.bootstrap,
        "database_url": args.database_url,
        "schema": args.schema,
        "http_port": args.http_port,
        "http_host": args.http_host,
        "public_base_url": args.public_url,
        "metrics_port": args.metrics_port,
        "metrics_host": args.metrics_host,
        "topic_prefix": args.topic_prefix,
        "consumer_group": args.consumer_group,
        "concurrency": args.concurrency,
        "line_rate_per_second": args.line_rate,
    }
    settings = base.with_overrides(**overrides)
    settings.check()
    if (problem := topic_prefix_problem(settings.topic_prefix)) is not None:
        raise SettingsError(f"DRIPSTREAM_TOPIC_PREFIX: {problem}")
    return settings


def run(args: argparse.Namespace) -> int:
    from streams.outages import log_as_service  # noqa: PLC0415 - heavy imports

    log_as_service("%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = settings_from(args)
    except SettingsError as error:
        print(f"dripstream effects: {error}", file=sys.stderr)
        return 2
    if args.memory_ledger:
        settings = replace(settings, database_url=None)  # as the flag says, DATABASE_URL set or not
    elif args.commands is None and not settings.database_url:
        print(f"dripstream effects: {NO_LEDGER}", file=sys.stderr)
        return 2
    from effects.pg_schema import AnotherDeploymentsLedgerError  # noqa: PLC0415
    from effects.processor import CredentialsRefused  # noqa: PLC0415 - heavy imports

    try:
        if args.commands is not None:
            from effects.filerun import run_commands_file  # noqa: PLC0415 - heavy imports

            if (problem := _file_problem(args.commands, args.outcomes)) is not None:
                print(f"dripstream effects: {problem}", file=sys.stderr)
                return 2

            return asyncio.run(run_commands_file(settings, args.commands, args.outcomes))
        return asyncio.run(_run_worker(settings))
    except (CredentialsRefused, AnotherDeploymentsLedgerError) as error:
        print(f"dripstream effects: {error}", file=sys.stderr)
        return 2


def _file_problem(commands: Path, outcomes: Path | None) -> str | None:
    """Why the commands cannot be read or the outcomes appended, said before any command
    is carried out (a run that stopped there would have sent some and recorded nothing)."""
    try:
        with commands.open("rb"):
            pass
    except OSError as error:
        return f"cannot read {commands} (--commands): {error.strerror}"
    if outcomes is not None:
        try:
            with outcomes.open("ab"):
                pass
        except OSError as error:
            return f"cannot write {outcomes} (--outcomes): {error.strerror}"
    return None


async def _run_worker(settings: EffectsSettings) -> int:
    from effects.worker import run_effects_worker  # noqa: PLC0415 - heavy imports

    if settings.database_url:
        # The ledger first, as before: its pool would retry a lost database for its whole
        # timeout; one plain connection says why at once.
        problem = await asyncio.to_thread(connect_problem, settings.database_url)
        if problem is not None:
            print(f"dripstream: {database_problem(problem)}", file=sys.stderr)
            return 2
    await _broker_answers(settings.kafka_bootstrap_servers)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await run_effects_worker(settings, stop=stop)
    return 0


async def _broker_answers(bootstrap: str) -> None:
    """Raise the client's connection error when no broker answers at the start: the
    processor rides out a broker lost while it runs, and so waited for ever for one that
    was never there (a wrong address) instead of saying so in one line (ops/cli.py)."""
    from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped, unused-ignore]  # noqa: PLC0415

    from streams.outages import start_quietly  # noqa: PLC0415

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await start_quietly(producer)
    await producer.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m ops.effects_cli effects ...` (the same command as `dripstream effects`)."""
    parser = argparse.ArgumentParser(prog="dripstream")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    register(commands)
    args = parser.parse_args(argv)
    handler = args.handler
    result: int = handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
