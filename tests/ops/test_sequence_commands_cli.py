"""`dripstream sequences enroll | remove | copy | delete`: the command each publishes, where,
and a bad one refused naming the option (no broker: publishing keeps what it was given)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from ops.cli import build_parser
from schemas.validation import decode_event
from tests.ops.conftest import Published


def run(*argv: str) -> int:
    args = build_parser("sequences").parse_args(["sequences", *argv])
    code: int = args.handler(args)
    return code


def only(published: Published) -> tuple[bytes | None, dict[str, Any]]:
    [(topic, key, value)] = published
    assert topic == "commands"
    event = decode_event(value, as_input=True)  # what a worker will read
    assert event.source == "dripstream-cli"
    assert key == event.subject.encode()
    return key, {"type": event.type, **event.data}


def test_removing_one_contact_is_keyed_by_it(published: Published) -> None:
    assert run("remove", "welcome", "--contact", "c-1") == 0
    assert only(published) == (
        b"c-1",
        {"type": "enrollment.removal_requested", "sequence_id": "welcome", "contact_ids": ["c-1"]},
    )


def test_enrolling_by_tag_and_contacts_goes_to_the_sequence_for_fan_out(
    published: Published,
) -> None:
    assert run("enroll", "welcome", "--contact", "c-1", "--contact", "c-2", "--tag", "hot") == 0
    key, data = only(published)
    assert key == b"sequence:welcome"
    assert data == {
        "type": "enrollment.requested",
        "sequence_id": "welcome",
        "contact_ids": ["c-1", "c-2"],
        "tag": "hot",
    }


def test_copy_and_delete_are_definition_commands(published: Published) -> None:
    assert run("copy", "welcome", "welcome-2", "--name", "Welcome again") == 0
    assert run("delete", "welcome") == 0
    events = [orjson.loads(value) for _, _, value in published]
    assert [(e["type"], e["subject"], e["data"]) for e in events] == [
        (
            "sequence.copy_requested",
            "sequences",
            {"sequence_id": "welcome", "new_id": "welcome-2", "new_name": "Welcome again"},
        ),
        ("sequence.delete_requested", "sequences", {"sequence_id": "welcome"}),
    ]
    assert events[0]["id"] != events[1]["id"]


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["enroll", "welcome"], "give --contact, --tag or --line"),
        (["remove", "welcome", "--tag", ""], "--tag: must not be empty"),
        (["enroll", "welcome", "--contact", ""], "--contact"),
        (["copy", "welcome", "has space"], "NEW_ID: "),
        (["copy", "welcome", "w2", "--name", ""], "--name: "),
    ],
)
def test_a_bad_command_is_refused_naming_the_option_and_nothing_is_sent(
    published: Published, capsys: pytest.CaptureFixture[str], argv: list[str], named: str
) -> None:
    assert run(*argv) == 2
    assert named in capsys.readouterr().err
    assert published == []


def test_a_command_can_carry_a_time_of_the_history_it_joins(published: Published) -> None:
    assert run("remove", "welcome", "--tag", "hot", "--time", "2028-03-03T12:00:00Z") == 0
    [(_, _, value)] = published
    assert orjson.loads(value)["time"] == "2028-03-03T12:00:00Z"


def test_a_time_that_is_not_rfc_3339_is_refused_by_the_parser(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as refused:
        run("delete", "welcome", "--time", "yesterday")
    assert refused.value.code == 2
    assert "--time" in capsys.readouterr().err
