"""`dripstream sequences enroll | remove | copy | delete`: the Sequences page's actions as
commands on the `commands` topic, decided by the workers as the HTTP API's are."""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

from aggregates.targets import request_subject
from ops import kafka_cli
from ops.cli_groups import SubParsers, get_or_create_group
from ops.cli_time import moment
from ops.input_topics import InputTopicsNotReadyError
from ops.service_errors import quiet_kafka_client
from ops.settings import Settings, add_kafka_flags
from schemas.envelope import CloudEvent
from schemas.validation import EventRejected, decode_event

SOURCE = "dripstream-cli"
DEFINITIONS_SUBJECT = "sequences"  # as `sequences apply` and the API key definition commands


def register(commands: SubParsers) -> None:
    env = Settings.from_environment()
    sequences = get_or_create_group(
        commands, "sequences", help="sequence definitions and the sequences list"
    )
    for name, what in (("enroll", "enroll contacts"), ("remove", "take contacts out")):
        summary = f"{what}, by id, tag or line (publishes {_TARGETED_TYPES[name]})"
        targeted = sequences.add_parser(
            name,
            help=summary,
            description=f"{summary[0].upper()}{summary[1:]} to the commands topic, keyed by"
            " the contact when there is one, else copied by the worker to every partition. A"
            " request naming no contact, tag or line is refused, exit 2. The workers decide it"
            " as they decide the HTTP API's.",
        )
        _connection(targeted, env, _IN_EVENT_TIME)
        targeted.add_argument("sequence_id")
        targeted.add_argument(
            "--contact", action="append", default=[], metavar="ID", help="a contact id (repeatable)"
        )
        targeted.add_argument("--tag", help="every contact with this tag")
        targeted.add_argument("--line", help="every contact on this line")
        targeted.set_defaults(handler=run_targeted, action=name)

    copy = sequences.add_parser("copy", help="copy a sequence (publishes sequence.copy_requested)")
    _connection(copy, env, _AHEAD_OF_INPUTS)
    copy.add_argument("sequence_id")
    copy.add_argument("new_id")
    copy.add_argument("--name", help="the copy's name (default: '<name> (copy)')")
    copy.set_defaults(handler=run_copy)

    delete = sequences.add_parser(
        "delete",
        help="delete a sequence, disenrolling its contacts (publishes sequence.delete_requested)",
    )
    _connection(delete, env, _AHEAD_OF_INPUTS)
    delete.add_argument("sequence_id")
    delete.set_defaults(handler=run_delete)


_TARGETED_TYPES = {"enroll": "enrollment.requested", "remove": "enrollment.removal_requested"}


# What `--time` means to a worker on the event clock, per kind of command.
_IN_EVENT_TIME = (
    "under `worker --clock event` it is decided at its time among the inputs, so give one"
    " inside the history"
)
_AHEAD_OF_INPUTS = (
    "under `worker --clock event` it is decided as soon as it is read, ahead of the inputs"
    " read with it, as a definition is (the README's Known limits), at this time: give one"
    " inside the history"
)


def _connection(parser: argparse.ArgumentParser, env: Settings, under_event_clock: str) -> None:
    add_kafka_flags(parser, env)
    parser.add_argument(
        "--time",
        type=moment,
        metavar="TIME",
        help=f"the command's time, RFC 3339 (default now): {under_event_clock}",
    )


def run_targeted(args: argparse.Namespace) -> int:
    data: dict[str, Any] = {"sequence_id": args.sequence_id}
    if args.contact:
        data["contact_ids"] = list(dict.fromkeys(args.contact))
    if args.tag is not None:
        data["tag"] = args.tag
    if args.line is not None:
        data["line_id"] = args.line
    subject = request_subject(args.sequence_id, data)
    return _publish(args, _TARGETED_TYPES[args.action], subject, data)


def run_copy(args: argparse.Namespace) -> int:
    data = {"sequence_id": args.sequence_id, "new_id": args.new_id}
    if args.name is not None:
        data["new_name"] = args.name
    return _publish(args, "sequence.copy_requested", DEFINITIONS_SUBJECT, data)


def run_delete(args: argparse.Namespace) -> int:
    data = {"sequence_id": args.sequence_id}
    return _publish(args, "sequence.delete_requested", DEFINITIONS_SUBJECT, data)


def _publish(args: argparse.Namespace, kind: str, subject: str, data: dict[str, Any]) -> int:
    """Check the command as a worker will, then publish it. A bad one: exit 2, nothing sent."""
    command = CloudEvent(
        id=f"cli-{uuid.uuid4().hex}",
        source=SOURCE,
        type=kind,
        time=args.time or datetime.now(UTC),
        subject=subject,
        data=data,
    )
    try:
        decode_event(command.encode(), as_input=True)
    except EventRejected as rejected:
        print(f"dripstream sequences: {_as_option(rejected)}", file=sys.stderr)
        return 2
    quiet_kafka_client()
    try:
        refused = asyncio.run(
            kafka_cli.publish(
                args.bootstrap,
                args.topic_prefix,
                [("commands", subject.encode(), command.encode())],
            )
        )
    except InputTopicsNotReadyError as error:
        print(f"dripstream sequences: not published: {error}", file=sys.stderr)
        return 2
    if refused:
        print(f"dripstream sequences: not published: {refused[0][1]}", file=sys.stderr)
        return 1
    print(
        f"published {kind} {command.id} (decided by the workers; the read models show the"
        " outcome once they have caught up)",
        file=sys.stderr,
    )
    return 0


_OPTIONS = {
    "data.contact_ids": "--contact",
    "data.tag": "--tag",
    "data.line_id": "--line",
    "data.new_id": "NEW_ID",
    "data.new_name": "--name",
    "data.sequence_id": "SEQUENCE_ID",
    "subject": "SEQUENCE_ID",
}


def _as_option(rejected: EventRejected) -> str:
    """The reason, naming what the user typed rather than the event's field."""
    field = rejected.field
    for prefix, option in _OPTIONS.items():
        if field.startswith(prefix):
            return f"{option}: {rejected.reason}"
    if field == "data":  # none of the targets: the command's own words for them
        return "give --contact, --tag or --line"
    return str(rejected)
