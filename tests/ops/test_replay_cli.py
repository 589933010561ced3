"""`dripstream replay` on files: a sequence file with no account, and the dead-letter file."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

from aggregates.engine import Engine
from ops import replay_cli
from ops.cli import main
from schemas.checking import schema_document
from schemas.unknown_keys import STEP_SETTINGS, TRIGGER_SETTINGS

ONLY_SEQUENCES = """\
sequences:
  - id: hello
    name: Hello
    process_on: every_day
    outbound_line: line-1
    steps:
      - {id: s1, type: send_sms, text: "Hi [FirstName]"}
    triggers:
      - {type: contact_tagged, tags: [hot]}
"""
GOOD_LINES = [
    {
        "specversion": "1.0",
        "id": "e-1",
        "source": "crm",
        "type": "contact.created",
        "time": "2028-03-02T15:00:00Z",
        "subject": "c-1",
        "data": {"contact_id": "c-1", "first_name": "Ana", "phone": "+12125550101"},
    },
    {
        "specversion": "1.0",
        "id": "e-2",
        "source": "crm",
        "type": "contact.tag_added",
        "time": "2028-03-02T15:01:00Z",
        "subject": "c-1",
        "data": {"contact_id": "c-1", "tag": "hot"},
    },
]


def replay(
    tmp_path: Path, sequences: str, lines: list[bytes]
) -> tuple[int, list[dict[str, Any]], list[dict[str, Any]]]:
    """Runs `dripstream replay --out --dlq`; returns the status, outputs and dead letters."""
    (tmp_path / "sequences.yaml").write_text(sequences)
    (tmp_path / "events.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))
    out, dlq = tmp_path / "out.jsonl", tmp_path / "dlq.jsonl"
    status = main(
        [
            "replay",
            "--sequences", str(tmp_path / "sequences.yaml"),
            "--events", str(tmp_path / "events.jsonl"),
            "--out", str(out),
            "--dlq", str(dlq),
        ]
    )  # fmt: skip
    return status, [orjson.loads(line) for line in out.read_bytes().splitlines()], letters(dlq)


def letters(dlq: Path) -> list[dict[str, Any]]:
    """The dead-letter file's lines, each checked against its published schema."""
    found = [orjson.loads(line) for line in dlq.read_bytes().splitlines()]
    for letter in found:
        jsonschema.validate(letter, schema_document("rejected_line.schema.json"))
    return found


def good_lines() -> list[bytes]:
    return [orjson.dumps(event) for event in GOOD_LINES]


def warnings_said(capsys: pytest.CaptureFixture[str]) -> list[str]:
    """The warnings on stderr so far, each without its `dripstream: FILE: warning: `."""
    err = capsys.readouterr().err
    return [line.split("warning: ", 1)[1] for line in err.splitlines() if "warning: " in line]


def test_a_file_with_only_sequences_replays_and_sms_end_with_the_default_phrase(
    tmp_path: Path,
) -> None:
    status, outputs, dead = replay(tmp_path, ONLY_SEQUENCES, good_lines())

    assert (status, dead) == (0, [])
    defined = [e["data"] for e in outputs if e["type"] == "sequence.defined"]
    assert [(d["sequence_id"], d["status"], d["account_timezone"]) for d in defined] == [
        ("hello", "active", "UTC")
    ]
    assert [e["data"]["body"] for e in outputs if e["type"] == "sms.send"] == [
        "Hi Ana Reply STOP to opt out."
    ]


def test_an_account_without_an_opt_out_phrase_gets_the_default_one(tmp_path: Path) -> None:
    sequences = "account: {timezone: America/New_York}\n" + ONLY_SEQUENCES

    status, outputs, _ = replay(tmp_path, sequences, good_lines())

    assert status == 0
    assert [e["data"]["body"] for e in outputs if e["type"] == "sms.send"] == [
        "Hi Ana Reply STOP to opt out."
    ]


@pytest.mark.parametrize(
    "bad",
    [
        b'{"specversion": "1.0", "id": "x\xff\xfe"}',  # not UTF-8
        b'{"specversion": "1.0", "id": "x-\xc3\xa9"}',  # UTF-8 (an e-acute), just not an event
    ],
)
def test_a_dead_letter_keeps_the_exact_bytes_of_the_line(tmp_path: Path, bad: bytes) -> None:
    first, second = good_lines()

    status, outputs, dead = replay(tmp_path, ONLY_SEQUENCES, [first, bad, second])

    assert status == 1
    assert [letter["line"] for letter in dead] == [2]
    # The line as read, its line ending included (as in `raw`).
    assert base64.b64decode(dead[0]["raw_base64"], validate=True) == bad + b"\n"
    assert dead[0]["raw"] == (bad + b"\n").decode("utf-8", errors="replace")
    assert {"line", "field", "reason", "raw", "raw_base64"} == set(dead[0])
    assert [e["data"]["contact_id"] for e in outputs if e["type"] == "sms.send"] == ["c-1"]


def test_blank_lines_are_skipped_and_still_counted_in_line_numbers(tmp_path: Path) -> None:
    first, second = good_lines()

    status, outputs, dead = replay(tmp_path, ONLY_SEQUENCES, [b"", b" \t", first, b"{", second])

    assert status == 1  # the bad line, not the blank ones
    assert [letter["line"] for letter in dead] == [4]
    assert [e["data"]["contact_id"] for e in outputs if e["type"] == "sms.send"] == ["c-1"]


def test_a_first_line_holding_only_a_byte_order_mark_is_blank(tmp_path: Path) -> None:
    first, second = good_lines()

    status, outputs, dead = replay(tmp_path, ONLY_SEQUENCES, [b"\xef\xbb\xbf", first, second])

    assert (status, dead) == (0, [])
    assert [e["data"]["contact_id"] for e in outputs if e["type"] == "sms.send"] == ["c-1"]


def test_a_line_that_is_not_utf8_loses_its_bytes_in_raw_but_not_in_raw_base64(
    tmp_path: Path,
) -> None:
    bad = b"\xff\xfe{}"

    _, _, dead = replay(tmp_path, ONLY_SEQUENCES, [bad])

    assert dead[0]["raw"] == "\ufffd\ufffd{}\n"
    assert dead[0]["raw_base64"] == "//57fQo="


# --- times the engine cannot compute with, delays too long, outputs that cannot be written


def event_at(time: str, **changes: Any) -> bytes:
    return orjson.dumps({**GOOD_LINES[0], "id": "e-late", "time": time, **changes})


@pytest.mark.parametrize(
    "time", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "9999-12-31T23:59:59Z"]
)
def test_an_event_time_out_of_range_is_a_dead_letter_and_the_run_goes_on(
    tmp_path: Path, time: str, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = good_lines()

    status, outputs, dead = replay(tmp_path, ONLY_SEQUENCES, [first, event_at(time), second])

    assert status == 1
    reason = "must be between 1900-01-01T00:00:00Z and 9000-12-31T23:59:59Z"
    assert [(d["line"], d["field"], d["reason"]) for d in dead] == [(2, "time", reason)]
    assert f"line 2: time: {reason}" in capsys.readouterr().err
    assert [e["data"]["contact_id"] for e in outputs if e["type"] == "sms.send"] == ["c-1"]


LONGEST_DELAYS = """\
sequences:
  - id: minutes
    name: Minutes
    process_on: every_day
    steps:
      - {id: s1, type: add_tag, tag: a, delay: {kind: default, amount: 5256000, unit: minutes}}
    triggers:
      - {type: contact_created}
  - id: days
    name: Days
    process_on: every_day
    steps:
      - {id: s1, type: add_tag, tag: b}
      - {id: s2, type: add_tag, tag: c, delay: {kind: time_of_day, days: 3650, at: "10:00"}}
    triggers:
      - {type: contact_created}
"""


def test_the_longest_delays_from_the_latest_time_are_scheduled(tmp_path: Path) -> None:
    lines = [event_at("9000-12-31T23:59:59Z")]

    status, outputs, dead = replay_until(tmp_path, LONGEST_DELAYS, lines, until=None)

    assert (status, dead) == (0, [])
    scheduled = [
        (e["data"]["sequence_id"], e["data"]["step_id"], e["data"]["due_at"])
        for e in outputs
        if e["type"] == "step.scheduled"
    ]
    assert sorted(scheduled) == [
        ("days", "s1", "9000-12-31T23:59:59Z"),
        ("days", "s2", "9010-12-29T15:00:00Z"),  # 10:00 in New York, from the phone
        ("minutes", "s1", "9010-12-29T23:59:59Z"),
    ]


def replay_until(
    tmp_path: Path, sequences: str, lines: list[bytes], until: str | None
) -> tuple[int, list[dict[str, Any]], list[dict[str, Any]]]:
    (tmp_path / "sequences.yaml").write_text(sequences)
    (tmp_path / "events.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))
    out, dlq = tmp_path / "out.jsonl", tmp_path / "dlq.jsonl"
    arguments = [
        "replay",
        "--sequences", str(tmp_path / "sequences.yaml"),
        "--events", str(tmp_path / "events.jsonl"),
        "--out", str(out),
        "--dlq", str(dlq),
    ]  # fmt: skip
    status = main(arguments if until is None else [*arguments, "--until", until])
    return status, [orjson.loads(line) for line in out.read_bytes().splitlines()], letters(dlq)


@pytest.mark.parametrize(
    ("until", "message"),
    [
        (
            "0001-01-01T00:00:00+01:00",
            "argument --until: '0001-01-01T00:00:00+01:00' must be between "
            "1900-01-01T00:00:00Z and 9000-12-31T23:59:59Z",
        ),
        (
            "9999-12-31T23:59:59Z",
            "argument --until: '9999-12-31T23:59:59Z' must be between "
            "1900-01-01T00:00:00Z and 9000-12-31T23:59:59Z",
        ),
        ("soon", "argument --until: not an RFC 3339 time: 'soon'"),
        # What Python's fromisoformat reads and RFC 3339 does not: a typo is no time.
        ("2027-10-12T10Z", "argument --until: not an RFC 3339 time: '2027-10-12T10Z'"),
        ("20271012T100000Z", "argument --until: not an RFC 3339 time: '20271012T100000Z'"),
        ("2027-W41-2T10:00:00Z", "argument --until: not an RFC 3339 time: '2027-W41-2T10:00:00Z'"),
        (
            "2027-10-12T10:00:00+0530",
            "argument --until: not an RFC 3339 time: '2027-10-12T10:00:00+0530'",
        ),
    ],
)
def test_an_until_out_of_range_stops_with_exit_2_and_a_message(
    tmp_path: Path, until: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        replay_until(tmp_path, ONLY_SEQUENCES, good_lines(), until=until)

    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert message in error
    assert "Traceback" not in error
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize(
    ("delay", "field", "reason"),
    [
        ("{kind: default, amount: 3000000, unit: days}", "amount", "must be at most 3650 days"),
        ('{kind: time_of_day, days: 99999999999, at: "10:00"}', "days", "must be at most 3650"),
    ],
)
def test_a_sequence_file_with_a_delay_too_long_is_refused_whole(
    tmp_path: Path, delay: str, field: str, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sequences = ONLY_SEQUENCES.replace('text: "Hi [FirstName]"', f"text: Hi, delay: {delay}")

    status = main(
        [
            "replay",
            "--sequences", str(write(tmp_path / "sequences.yaml", sequences)),
            "--events", str(write(tmp_path / "events.jsonl", b"\n".join(good_lines()))),
            "--out", str(tmp_path / "out.jsonl"),
        ]
    )  # fmt: skip

    assert status == 2
    assert f"sequence 'hello': steps[0].delay.{field}: {reason}" in capsys.readouterr().err
    assert not (tmp_path / "out.jsonl").exists()


def write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, str):
        path.write_text(content)
    else:
        path.write_bytes(content)
    return path


@pytest.mark.parametrize("option", ["--out", "--dlq"])
def test_an_output_in_a_missing_directory_stops_with_exit_2_before_anything_runs(
    tmp_path: Path, option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-such-dir" / "file.jsonl"
    other = "--dlq" if option == "--out" else "--out"

    status = main(
        [
            "replay",
            "--sequences", str(write(tmp_path / "sequences.yaml", ONLY_SEQUENCES)),
            "--events", str(write(tmp_path / "events.jsonl", b"\n".join(good_lines()))),
            option, str(missing),
            other, str(tmp_path / "other.jsonl"),
        ]
    )  # fmt: skip

    assert status == 2
    error = capsys.readouterr().err
    assert error == (
        f"dripstream: cannot write {missing} ({option}): no such directory: {missing.parent}\n"
    )
    assert not (tmp_path / "other.jsonl").exists()


def test_an_output_that_is_a_directory_stops_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(
        [
            "replay",
            "--sequences", str(write(tmp_path / "sequences.yaml", ONLY_SEQUENCES)),
            "--events", str(write(tmp_path / "events.jsonl", b"\n".join(good_lines()))),
            "--out", str(tmp_path),
        ]
    )  # fmt: skip

    assert status == 2
    assert (
        capsys.readouterr().err == f"dripstream: cannot write {tmp_path} (--out): is a directory\n"
    )


@pytest.mark.parametrize(
    ("option", "same_as"),
    [("--out", "--events"), ("--out", "--sequences"), ("--dlq", "--events"), ("--dlq", "--out")],
)
def test_an_output_naming_another_file_of_the_run_stops_with_exit_2_and_empties_nothing(
    tmp_path: Path, option: str, same_as: str, capsys: pytest.CaptureFixture[str]
) -> None:
    files = {
        "--sequences": write(tmp_path / "sequences.yaml", ONLY_SEQUENCES),
        "--events": write(tmp_path / "events.jsonl", b"\n".join(good_lines())),
        "--out": tmp_path / "out.jsonl",
    }
    before = {name: path.read_bytes() for name, path in files.items() if path.exists()}
    # the same file, spelled another way
    files[option] = tmp_path / "." / files[same_as].name
    status = main(["replay", *(part for item in files.items() for part in map(str, item))])

    assert status == 2
    assert capsys.readouterr().err == (
        f"dripstream: {option} {files[option]} names the same file as {same_as}: nothing"
        " was written\n"
    )
    assert {name: files[name].read_bytes() for name in before} == before


def test_a_run_that_dies_leaves_out_as_it_was_and_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a run whose input gives out with an unexpected error after the first two lines
    real_replay = replay_cli.replay

    def failing_lines(lines: Iterable[bytes]) -> Iterator[bytes]:
        yield from list(lines)[:2]
        raise RuntimeError("the disk went away")

    def replay_then_fail(definitions: Any, lines: Iterable[bytes], *args: Any, **kw: Any) -> Any:
        return real_replay(definitions, failing_lines(lines), *args, **kw)

    monkeypatch.setattr(replay_cli, "replay", replay_then_fail)
    out = write(tmp_path / "out.jsonl", b"an earlier run's output\n")

    # When it runs, the error goes on up
    with pytest.raises(RuntimeError, match="the disk went away"):
        main(
            [
                "replay",
                "--sequences", str(write(tmp_path / "sequences.yaml", ONLY_SEQUENCES)),
                "--events", str(write(tmp_path / "events.jsonl", b"\n".join(good_lines()))),
                "--out", str(out),
            ]
        )  # fmt: skip

    # Then --out is as it was (half a replay would look like a whole one), and nothing of
    # the run is left beside it
    assert out.read_bytes() == b"an earlier run's output\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "events.jsonl",
        "out.jsonl",
        "sequences.yaml",
    ]


def test_a_dnc_that_is_not_a_boolean_is_a_dead_letter_and_leaves_the_contact_reachable(
    tmp_path: Path,
) -> None:
    first, second = good_lines()
    update = orjson.dumps(
        {
            **GOOD_LINES[0],
            "id": "e-upd",
            "type": "contact.updated",
            "time": "2028-03-02T15:00:30Z",
            "data": {"contact_id": "c-1", "dnc": "false"},
        }
    )

    status, outputs, dead = replay(tmp_path, ONLY_SEQUENCES, [first, update, second])

    assert status == 1
    assert [(d["line"], d["field"], d["reason"]) for d in dead] == [
        (2, "data.dnc", "must be a boolean or null")
    ]
    assert [e["type"] for e in outputs if e["type"] in ("sms.send", "step.skipped")] == ["sms.send"]


def test_a_repeated_event_is_skipped_and_said_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the first line again, after a later one: skipped as a repeat, not decided late
    lines = [orjson.dumps(e) for e in GOOD_LINES] + [orjson.dumps(GOOD_LINES[0])]
    status, outputs, _ = replay(tmp_path, ONLY_SEQUENCES, lines)
    assert status == 0
    assert [e["type"] for e in outputs].count("sms.send") == 1
    said = capsys.readouterr().err
    assert "1 event(s) repeated the source and id" in said
    assert "(the first at line 3)" in said
    assert "earlier than" not in said


OWNER_SEQUENCE = """\
account: {users: {u-7: {name: Sam, phone: "+12125550007"}}}
sequences:
  - id: own
    name: Owner
    process_on: every_day
    steps:
      - {id: s1, type: change_owner, owner_id: u-7}
    triggers:
      - {type: contact_tagged, tags: [hot]}
"""


@pytest.mark.parametrize(("flags", "notices"), [([], 1), (["--leave-windows-open"], 0)])
def test_the_last_minutes_owner_notice_is_sent_unless_windows_stay_open(
    tmp_path: Path, flags: list[str], notices: int
) -> None:
    (tmp_path / "s.yaml").write_text(OWNER_SEQUENCE)
    (tmp_path / "e.jsonl").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in GOOD_LINES))
    out = tmp_path / "out.jsonl"
    arguments = ["replay", "--sequences", str(tmp_path / "s.yaml")]
    arguments += ["--events", str(tmp_path / "e.jsonl"), "--out", str(out), *flags]
    assert main(arguments) == 0
    sent = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [e["type"] for e in sent].count("notify.sms") == notices


def test_an_event_earlier_than_the_one_before_it_is_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    earlier = {**GOOD_LINES[1], "id": "e-3", "time": "2028-03-02T14:00:00Z"}
    earlier_still = {**earlier, "id": "e-4"}
    lines = [orjson.dumps(e) for e in [*GOOD_LINES, earlier, earlier_still]]
    status, _, _ = replay(tmp_path, ONLY_SEQUENCES, lines)
    assert status == 0
    said = capsys.readouterr().err
    assert "2 event(s) were earlier than an event before them (the first at line 3)" in said


def test_a_key_nothing_reads_is_named_on_stderr_and_the_file_still_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A typo would otherwise leave the setting at its default without a word.
    typo = ONLY_SEQUENCES.replace(
        "    process_on:", "    remove_on_respnse: false\n    process_on:"
    )
    typo = typo.replace('text: "Hi [FirstName]"', 'text: "Hi [FirstName]", colour: red')

    status, outputs, _ = replay(tmp_path, typo, good_lines())

    assert status == 0
    assert len([e for e in outputs if e["type"] == "sms.send"]) == 1
    assert warnings_said(capsys) == [
        "sequence hello: remove_on_respnse: unknown key, ignored",
        "sequence hello: steps[0].colour: unknown key, ignored",
    ]


def test_provider_settings_in_the_account_are_named_as_read_by_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The signing secret and the postal address are the effects processor's settings; in
    # the account they would be published on `commands` and do nothing.
    account = 'account: {webhook_secret: "whsec_abc", postal_address: "1 Main St"}\n'
    status, _, _ = replay(tmp_path, account + ONLY_SEQUENCES, good_lines())
    assert status == 0
    assert warnings_said(capsys) == [
        "account.webhook_secret: unknown key, ignored",
        "account.postal_address: unknown key, ignored",
    ]


def test_a_sequence_that_loads_invalid_is_named_on_stderr_with_its_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # It loads (CONTRACT.md §2) and rejects every enrollment: without a word the author
    # would learn it from the read models only.
    broken = ONLY_SEQUENCES.replace("    outbound_line: line-1\n", "").replace(
        "Hi [FirstName]", "Hi [First Name]"
    )
    status, outputs, _ = replay(tmp_path, broken, good_lines())

    assert status == 0
    assert [e["data"]["reason"] for e in outputs if e["type"] == "enrollment.rejected"] == [
        "sequence_invalid"
    ]
    assert warnings_said(capsys) == [
        "sequence 'hello' is invalid, nobody is enrolled in it:"
        " step s1 (send_sms): needs the sequence's outbound_line;"
        " step s1 (send_sms): [First Name] in text is no shortcode: write [FirstName]"
    ]


def test_a_ring_group_member_a_step_cannot_reach_is_named_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The group is texted and mailed: the member without a phone gets the mail only, the
    # one without an e-mail the text only. The sequence runs (the others are reached), and
    # the author hears of the gaps before a member never does.
    account = """\
account:
  users:
    u-1: {name: Ann, phone: "+12125550001", email: ann@example.com}
    u-2: {name: Bo, email: bo@example.com}
    u-3: {name: Cy, phone: "+12125550003"}
  ring_groups: {rg-desk: [u-1, u-2, u-3]}
"""
    steps = ONLY_SEQUENCES.replace(
        '      - {id: s1, type: send_sms, text: "Hi [FirstName]"}\n',
        '      - {id: s1, type: sms_ring_group, ring_group: rg-desk, text: "New lead"}\n'
        '      - {id: s2, type: email_ring_group, ring_group: rg-desk, subject: "Lead",'
        ' body: "New lead"}\n'
        "      - {id: s3, type: progressive_dialer, ring_group: rg-desk}\n",
    )
    status, outputs, _ = replay(tmp_path, account + steps, good_lines())

    assert status == 0
    texted = [e["data"] for e in outputs if e["type"] == "notify.sms"]
    assert [data["ring_group_numbers"] for data in texted] == [["+12125550001", "+12125550003"]]
    assert warnings_said(capsys) == [
        "sequence 'hello': ring group 'rg-desk' member 'u-2' has no phone,"
        " so step s1 (sms_ring_group) and step s3 (progressive_dialer) will not reach them",
        "sequence 'hello': ring group 'rg-desk' member 'u-3' has no e-mail,"
        " so step s2 (email_ring_group) will not reach them",
    ]


def test_a_new_owner_who_cannot_be_told_is_named_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The seed: the new owner is told. One with neither a phone nor an e-mail never is.
    account = """\
account:
  users:
    u-1: {name: Ann, phone: "+12125550001"}
    u-2: {name: Bo}
"""
    steps = ONLY_SEQUENCES.replace(
        '      - {id: s1, type: send_sms, text: "Hi [FirstName]"}\n',
        "      - {id: s1, type: change_owner, owner_id: u-2}\n"
        "      - {id: s2, type: round_robin_owner, owners: [u-1, u-2]}\n",
    )
    status, outputs, _ = replay(tmp_path, account + steps, good_lines())

    assert status == 0
    assert [e["data"]["owner_id"] for e in outputs if e["type"] == "contact.updated"] == [
        "u-2",
        "u-1",
    ]
    assert warnings_said(capsys) == [
        "sequence 'hello': user 'u-2' has no phone or e-mail, so step s1 (change_owner) and"
        " step s2 (round_robin_owner) cannot tell them of the contacts they are given"
    ]


def test_a_night_shift_sequence_loads_invalid_and_its_neighbours_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Hours that close before they open parse but cannot run (CONTRACT.md §2): the file is
    # not refused whole, and the other sequence in it still texts.
    night = ONLY_SEQUENCES.replace("id: hello", "id: night").replace(
        "process_on: every_day",
        'process_on: every_day\n    schedule: {open: "22:00", close: "06:00"}',
    )
    both = ONLY_SEQUENCES + night.split("sequences:\n", 1)[1]
    status, outputs, _ = replay(tmp_path, both, good_lines())

    assert status == 0
    defined = {
        e["data"]["sequence_id"]: e["data"] for e in outputs if e["type"] == "sequence.defined"
    }
    assert (defined["hello"]["status"], defined["night"]["status"]) == ("active", "invalid")
    assert [
        (e["data"]["sequence_id"], e["data"]["reason"])
        for e in outputs
        if e["type"] == "enrollment.rejected"
    ] == [("night", "sequence_invalid")]
    assert [e["data"]["sequence_id"] for e in outputs if e["type"] == "sms.send"] == ["hello"]
    assert "schedule: close (06:00) must be after open (22:00)" in capsys.readouterr().err


def test_run_on_holidays_with_every_day_is_named_as_read_by_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    every_day = ONLY_SEQUENCES.replace(
        "    process_on: every_day\n", "    process_on: every_day\n    run_on_holidays: true\n"
    )
    status, _, _ = replay(tmp_path, every_day, good_lines())
    assert status == 0
    assert warnings_said(capsys) == [
        "sequence hello: run_on_holidays: not read with process_on every_day, ignored"
    ]


def test_a_file_of_known_keys_gives_no_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, _ = replay(tmp_path, ONLY_SEQUENCES, good_lines())

    assert status == 0
    assert "warning" not in capsys.readouterr().err


def test_a_key_this_kind_of_step_delay_or_trigger_does_not_read_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A key another kind reads looks right and does nothing here: a delay of kind `none`
    # with an amount runs at once, a creation trigger with tags enrolls everyone.
    misplaced = ONLY_SEQUENCES.replace(
        'text: "Hi [FirstName]"}',
        'text: "Hi [FirstName]", ring_group: rg-sales, delay: {kind: none, amount: 5, unit: days}}',
    ).replace("{type: contact_tagged, tags: [hot]}", "{type: contact_created, tags: [vip]}")
    misplaced = misplaced.replace(
        "    steps:\n",
        "    steps:\n      - {id: s0, type: add_tag, tag: x, delay: {kind: default, amount: 1,"
        " unit: hours, days: 0}}\n",
    )

    status, _, _ = replay(tmp_path, misplaced, good_lines())

    assert status == 0
    assert warnings_said(capsys) == [
        "sequence hello: steps[1].ring_group: not read by a send_sms step, ignored",
        "sequence hello: steps[1].delay.amount: not read by a none delay, ignored",
        "sequence hello: steps[1].delay.unit: not read by a none delay, ignored",
        "sequence hello: triggers[0].tags: not read by a contact_created trigger, ignored",
    ]


def test_every_step_and_trigger_type_says_what_it_reads() -> None:
    schema = schema_document("sequences.schema.json")["definitions"]
    step_types = schema["step"]["allOf"][0]["properties"]["type"]["enum"]
    trigger_types = schema["trigger"]["allOf"][0]["properties"]["type"]["enum"]
    assert sorted(STEP_SETTINGS) == sorted(step_types)
    assert sorted(TRIGGER_SETTINGS) == sorted(trigger_types)


def test_a_file_saved_with_a_byte_order_mark_keeps_its_first_event(tmp_path: Path) -> None:
    first, *rest = good_lines()

    status, outputs, dead = replay(tmp_path, ONLY_SEQUENCES, [b"\xef\xbb\xbf" + first, *rest])

    assert (status, dead) == (0, [])
    assert len([e for e in outputs if e["type"] == "sms.send"]) == 1


def test_own_changes_are_passed_over_with_a_word_and_other_facts_under_its_source_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # given a dump of `contacts` holding one of the engine's own tag changes, and an inbound
    # text sent by a producer under the engine's source
    own_tag = {**GOOD_LINES[1], "id": "q/0", "source": "dripstream"}
    text = {
        **GOOD_LINES[1],
        "id": "m-1",
        "source": "dripstream",
        "type": "message.received",
        "data": {"message_id": "m-1", "contact_id": "c-1", "channel": "sms", "body": "hi"},
    }
    lines = [orjson.dumps(e) for e in [GOOD_LINES[0], own_tag, text, GOOD_LINES[1]]]
    # when it is replayed
    status, outputs, letters = replay(tmp_path, ONLY_SEQUENCES, lines)
    # then the own change is passed over, said with its line; the text is a dead letter
    assert status == 1
    assert [(letter["line"], letter["field"]) for letter in letters] == [(3, "source")]
    said = capsys.readouterr().err
    assert "1 event(s) with source 'dripstream' (the first at line 2)" in said
    assert [e["type"] for e in outputs].count("sms.send") == 1  # the upstream tag enrolled


def test_watermarks_are_passed_over_with_a_word(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # given a producer's file with a watermark between the facts (as it writes to Kafka)
    mark = {
        **GOOD_LINES[1],
        "id": "w-1",
        "type": "stream.watermark",
        "data": {"producer": "dripstream produce"},
    }
    lines = [orjson.dumps(e) for e in [GOOD_LINES[0], mark, GOOD_LINES[1]]]
    # when it is replayed
    status, outputs, letters = replay(tmp_path, ONLY_SEQUENCES, lines)
    # then it decides the facts alone, and says it passed the watermark over, with its line
    assert (status, letters) == (0, [])
    said = capsys.readouterr().err
    assert "1 stream.watermark event(s) (the first at line 2) were passed over" in said
    assert [e["type"] for e in outputs].count("sms.send") == 1


def test_a_line_with_a_nul_character_is_a_dead_letter_naming_the_field(tmp_path: Path) -> None:
    nul = {**GOOD_LINES[1], "id": "e-9", "data": {"contact_id": "c-1", "tag": "h\u0000t"}}
    lines = [orjson.dumps(e) for e in [GOOD_LINES[0], nul, GOOD_LINES[1]]]
    status, outputs, letters = replay(tmp_path, ONLY_SEQUENCES, lines)
    assert status == 1
    assert [(letter["line"], letter["field"]) for letter in letters] == [(2, "data.tag")]
    assert [e["type"] for e in outputs].count("sms.send") == 1


def test_an_input_the_engine_fails_on_stops_the_replay_naming_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # given an engine with a bug that the second line meets
    handle = Engine.handle

    def failing(self: Engine, event: Any, *args: Any, **kwargs: Any) -> Any:
        if event.id == "e-2":
            raise RuntimeError("a bug met by this input")
        return handle(self, event, *args, **kwargs)

    monkeypatch.setattr(Engine, "handle", failing)
    # when the file is replayed
    status, outputs, _ = replay(tmp_path, ONLY_SEQUENCES, good_lines())
    # then it stops at that line with exit 1, saying so, and what came before is written
    assert status == 1
    err = capsys.readouterr().err
    assert "RuntimeError: a bug met by this input" in err
    assert (
        f"{tmp_path / 'events.jsonl'}: line 2: the engine failed on it: RuntimeError:"
        " a bug met by this input; the replay stopped there"
    ) in err
    assert [o["type"] for o in outputs if o["type"] == "sequence.defined"] == ["sequence.defined"]


def replay_files(tmp_path: Path, parts: list[bytes], *extra: str) -> tuple[int, bytes]:
    """`dripstream replay` of the history in these files, in order: status and output."""
    tmp_path.mkdir(exist_ok=True)
    sequences = write(tmp_path / "sequences.yaml", ONLY_SEQUENCES)
    out = tmp_path / "out.jsonl"
    events = [
        arg
        for n, part in enumerate(parts, start=1)
        for arg in ("--events", str(write(tmp_path / f"part{n}.jsonl", part)))
    ]
    argv = ["replay", "--sequences", str(sequences), *events, "--out", str(out), *extra]
    return main(argv), out.read_bytes()


def more_lines() -> list[bytes]:
    later = {**GOOD_LINES[1], "id": "e-3", "time": "2028-03-02T15:05:00Z"}
    later["data"] = {"contact_id": "c-1", "tag": "warm"}
    return [*good_lines(), orjson.dumps(later)]


def test_a_history_split_over_files_replays_as_the_whole_given_in_order(tmp_path: Path) -> None:
    lines = more_lines()
    whole = replay_files(tmp_path / "whole", [b"\n".join(lines) + b"\n"])
    # the first part without its last newline, the second with a byte order mark
    split = replay_files(
        tmp_path / "split", [lines[0], b"\xef\xbb\xbf" + b"\n".join(lines[1:]) + b"\n"]
    )
    assert split == whole
    assert whole[0] == 0


def test_bad_lines_of_several_files_are_named_by_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _ = replay_files(
        tmp_path,
        [good_lines()[0] + b"\n{oops\n", b"\n".join(good_lines()[1:]) + b"\nnope\n"],
        "--dlq",
        str(tmp_path / "dlq.jsonl"),
    )
    assert status == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'part1.jsonl'}: line 2: event:" in err
    assert f"{tmp_path / 'part2.jsonl'}: line 2: event:" in err
    found = letters(tmp_path / "dlq.jsonl")
    assert [(letter["file"], letter["line"]) for letter in found] == [
        (str(tmp_path / "part1.jsonl"), 2),
        (str(tmp_path / "part2.jsonl"), 2),
    ]


def test_bad_lines_past_twenty_are_counted_not_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _ = replay_files(tmp_path, [b"\n".join([b"{bad"] * 25 + good_lines()) + b"\n"])
    assert status == 1
    err = capsys.readouterr().err
    assert err.count(": event: ") == 20
    assert "5 more bad line(s) not shown (--dlq FILE keeps them all)" in err


def test_an_output_that_cannot_be_written_is_said_in_one_line_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    full = Path("/dev/full")
    if not full.exists():
        pytest.skip("no /dev/full here")
    sequences = write(tmp_path / "sequences.yaml", ONLY_SEQUENCES)
    events = write(tmp_path / "events.jsonl", b"\n".join(good_lines()) + b"\n")
    argv = ["replay", "--sequences", str(sequences), "--events", str(events), "--out", str(full)]
    assert main(argv) == 2
    assert "cannot write /dev/full: No space left on device" in capsys.readouterr().err


def test_an_output_that_fails_while_inputs_are_decided_is_no_engine_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Outputs are written a chunk at a time as inputs are decided: a write failing then is
    # the output's (exit 2, one line), not "the engine failed on" the line being decided.
    full = Path("/dev/full")
    if not full.exists():
        pytest.skip("no /dev/full here")
    monkeypatch.setattr(replay_cli, "WRITE_CHUNK", 1)
    sequences = write(tmp_path / "sequences.yaml", ONLY_SEQUENCES)
    # Enough contacts to pass the file's own buffer before the input ends.
    tagged = [
        orjson.dumps(
            {**e, "id": f"{e['id']}-{n}", "subject": f"c-{n}",
             "data": {**e["data"], "contact_id": f"c-{n}"}}
        )
        for n in range(100)
        for e in GOOD_LINES
    ]  # fmt: skip
    events = write(tmp_path / "events.jsonl", b"\n".join(tagged) + b"\n")
    argv = ["replay", "--sequences", str(sequences), "--events", str(events), "--out", str(full)]
    assert main(argv) == 2
    assert (
        capsys.readouterr().err == "dripstream: cannot write /dev/full: No space left on device\n"
    )


def test_a_history_with_no_event_says_the_output_holds_the_definitions_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out = replay_files(tmp_path, [b""])
    assert status == 0
    assert [orjson.loads(line)["type"] for line in out.splitlines()] == ["sequence.defined"]
    assert "no input event was decided" in capsys.readouterr().err


def test_the_events_past_until_are_said_with_where_they_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # given a line past --until, then one timed before it: the history ends at the first
    late = {**GOOD_LINES[1], "id": "e-3", "time": "2028-03-02T15:02:00Z"}
    earlier = {**GOOD_LINES[1], "id": "e-4", "time": "2028-03-02T15:00:30Z"}
    lines = [orjson.dumps(e) for e in [GOOD_LINES[0], late, earlier]]
    status, _, _ = replay_until(tmp_path, ONLY_SEQUENCES, lines, until="2028-03-02T15:01:00Z")
    assert status == 0
    said = capsys.readouterr().err
    assert (
        "2 event(s) from the first one after --until on (at line 2) were not processed,"
        " 1 of them timed before --until" in said
    )


@pytest.mark.parametrize("failure", ["dlq refused", "interrupted"])
def test_a_run_that_cannot_finish_leaves_every_output_as_it_was(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    failure: str,
) -> None:
    # given outputs an earlier run left
    out = write(tmp_path / "out.jsonl", b"earlier decisions\n")
    dlq = write(tmp_path / "dlq.jsonl", b"earlier dead letters\n")
    arguments = [
        "replay",
        "--sequences", str(write(tmp_path / "sequences.yaml", ONLY_SEQUENCES)),
        "--events", str(write(tmp_path / "events.jsonl", b"\n".join(good_lines()))),
        "--out", str(out),
    ]  # fmt: skip
    if failure == "dlq refused":
        # when the second output cannot be made (a folder that takes no new file)
        arguments += ["--dlq", "/proc/no-such-file"]
        expected = 2
    else:
        # when the run is interrupted (Ctrl-C) in the middle
        def interrupted(*args: Any, **kw: Any) -> Any:
            raise KeyboardInterrupt

        monkeypatch.setattr(replay_cli, "replay", interrupted)
        arguments += ["--dlq", str(dlq)]
        expected = 130
    code = main(arguments)
    # then it says so, and neither file is emptied or half written
    assert code == expected
    assert "dripstream: " in capsys.readouterr().err
    assert out.read_bytes() == b"earlier decisions\n"
    assert dlq.read_bytes() == b"earlier dead letters\n"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
