"""`sequences list` and `history` on the command line: given an output file, then this output."""

from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from ops.cli_groups import get_or_create_group
from ops.history_files import joined
from ops.readmodel_cli import ProgressBar, register
from tests.projections.helpers import Stream

T0 = "2028-03-02T22:41:00Z"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dripstream")
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        args = build_parser().parse_args(argv)
        code = args.handler(args)
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    assert isinstance(code, int)
    return code, captured.out, captured.err


@pytest.fixture
def history_file(tmp_path: Path) -> Path:
    given = Stream()
    given.defined(
        "welcome",
        name="Welcome web leads",
        steps_count=4,
        line="line-main",
        process_on="business_days",
        account_timezone="America/Denver",
    )
    given.defined(
        "zeta",
        name="Broken",
        steps_count=1,
        line=None,
        status="invalid",
        problems=[
            "step s1 (send_sms): needs the sequence's outbound_line",
            "step s1 (send_sms): unknown shortcode [Nickname] in text",
        ],
    )
    given.enrolled(
        "welcome",
        "c-100",
        T0,
        steps_total=4,
        via="contact_tagged",
        name="Maya Ortiz",
        phone="+17205550142",
        email="maya@example.com",
    )
    given.step("executed", "welcome", "c-100", "hello", T0)
    given.scoped("sms.send", "welcome", "c-100", T0, step_id="hello")
    given.enrolled(
        "welcome", "c-101", "2028-03-02T22:46:00Z", steps_total=4, name="Ravi", phone="+17205550143"
    )
    given.disenrolled("welcome", "c-101", "2028-03-02T23:10:00Z")
    return given.write(tmp_path / "out.jsonl")


def cells(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def test_sequences_list_prints_an_aligned_table(
    capsys: pytest.CaptureFixture[str], history_file: Path
) -> None:
    code, out, err = run(capsys, "sequences", "list", "--history", str(history_file))

    assert (code, err) == (0, "")
    header, welcome, zeta, *problems = out.splitlines()
    assert cells(header) == [
        "ID",
        "NAME",
        "CREATED",
        "STEPS",
        "PROCESS ON",
        "LINE",
        "CONTACTS",
        "REMAINING TASKS",
        "STATUS",
    ]
    assert cells(welcome) == [
        "welcome",
        "Welcome web leads",
        "2028-03-01T00:00:00Z",
        "4",
        "business_days",
        "line-main",
        "1",
        "3",
        "active",
    ]
    assert cells(zeta)[-4:] == ["-", "0", "0", "invalid"]
    assert header.index("STATUS") == welcome.index("active") == zeta.index("invalid")
    assert problems == [
        "zeta: invalid: step s1 (send_sms): needs the sequence's outbound_line",
        "zeta: invalid: step s1 (send_sms): unknown shortcode [Nickname] in text",
    ]


def test_a_file_without_definitions_is_said_to_be_no_output_stream(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # an input file given by mistake: contact facts, no sequence.defined
    inputs = tmp_path / "events.jsonl"
    inputs.write_bytes(
        b'{"specversion":"1.0","id":"e-1","source":"crm","type":"contact.created",'
        b'"time":"2028-03-02T22:40:00Z","subject":"c-1","data":{"contact_id":"c-1"}}\n'
    )
    code, out, err = run(capsys, "sequences", "list", "--history", str(inputs))

    assert code == 0
    assert out.splitlines()[1:] == []
    assert "no sequence.defined in it" in err
    # and `history` of a sequence in it says the same after "unknown sequence"
    code, out, err = run(capsys, "history", "welcome", "--history", str(inputs))
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        f"dripstream: unknown sequence 'welcome': no such sequence in {inputs}",
        f"dripstream: {inputs}: no sequence.defined in it; the read models are built from an"
        " output stream (`replay --out`, `topics dump`)",
    ]


def test_sequences_list_json_gives_the_fixed_keys(
    capsys: pytest.CaptureFixture[str], history_file: Path
) -> None:
    code, out, _ = run(capsys, "sequences", "list", "--history", str(history_file), "--json")

    rows: list[dict[str, Any]] = orjson.loads(out)
    assert code == 0
    assert rows[0] == {
        "id": "welcome",
        "name": "Welcome web leads",
        "created": "2028-03-01T00:00:00Z",
        "steps": 4,
        "process_on": "business_days",
        "line": "line-main",
        "contacts": 1,
        "remaining_tasks": 3,
        "status": "active",
        "problems": [],
    }
    assert [r["id"] for r in rows] == ["welcome", "zeta"]
    assert rows[1]["status"] == "invalid"
    assert rows[1]["problems"] == [
        "step s1 (send_sms): needs the sequence's outbound_line",
        "step s1 (send_sms): unknown shortcode [Nickname] in text",
    ]


def test_history_json_gives_total_and_rows_newest_first(
    capsys: pytest.CaptureFixture[str], history_file: Path
) -> None:
    code, out, _ = run(capsys, "history", "welcome", "--history", str(history_file), "--json")

    report = orjson.loads(out)
    assert code == 0
    assert (report["sequence_id"], report["total"]) == ("welcome", 5)
    # and the window its timeframe chose: all time, counted from the latest decision
    assert {k: v for k, v in report.items() if k not in ("rows", "sequence_id", "total")} == {
        "timezone": "America/Denver",
        "timeframe": "all_time",
        "now": "2028-03-02T23:10:00Z",
        "from": None,
        "to": None,
    }
    assert report["rows"][0] == {
        "contact": "Ravi (c-101) +17205550143",
        "contact_id": "c-101",
        "contact_name": "Ravi",
        "contact_phone": "+17205550143",
        "action": "Disenrolled: responded",
        "event": "enrollment.disenrolled",
        "type": "enrollment.disenrolled",
        "time": "2028-03-02T23:10:00Z",
    }
    assert report["rows"][-1]["action"] == "Enrolled"
    assert report["rows"][-1]["event"] == "contact_tagged"


def test_history_json_says_the_window_of_its_timeframe(
    capsys: pytest.CaptureFixture[str], history_file: Path
) -> None:
    argv = ("history", "welcome", "--history", str(history_file), "--json")
    _, out, _ = run(capsys, *argv, "--timeframe", "today", "--timezone", "Asia/Tokyo")
    report = orjson.loads(out)
    # 23:10Z on 2 March is 08:10 on 3 March in Tokyo: that day, in UTC
    assert (report["timezone"], report["timeframe"]) == ("Asia/Tokyo", "today")
    assert (report["from"], report["to"]) == ("2028-03-02T15:00:00Z", "2028-03-03T15:00:00Z")


def test_history_json_contact_is_the_tables_contact_column(
    capsys: pytest.CaptureFixture[str], history_file: Path
) -> None:
    base = ("history", "welcome", "--history", str(history_file))

    _, table, _ = run(capsys, *base)
    _, out, _ = run(capsys, *base, "--json")

    header, *lines, total = table.splitlines()
    width = header.index("ACTION")
    rows = orjson.loads(out)["rows"]
    assert total == "Total: 5"
    assert [line[:width].rstrip() for line in lines] == [row["contact"] for row in rows]
    assert {row["contact"] for row in rows} == {
        "Ravi (c-101) +17205550143",
        "Maya Ortiz (c-100) +17205550142",
    }


def test_history_table_shows_local_times_and_the_total(
    capsys: pytest.CaptureFixture[str], history_file: Path
) -> None:
    code, out, _ = run(
        capsys,
        "history",
        "welcome",
        "--history",
        str(history_file),
        "--search",
        "7205550142",
        "--type",
        "communication",
    )

    assert code == 0
    assert out.splitlines() == [
        "CONTACT                          ACTION    EVENT     TIME",
        "Maya Ortiz (c-100) +17205550142  SMS sent  sms.send  2028-03-02T15:41:00-07:00",
        "Total: 1",
    ]


def test_history_filters_timeframe_zone_and_pages_from_flags(
    capsys: pytest.CaptureFixture[str], history_file: Path
) -> None:
    base = ("history", "welcome", "--history", str(history_file), "--json")

    def total_and_count(*flags: str) -> tuple[int, int]:
        code, out, _ = run(capsys, *base, *flags)
        assert code == 0
        report = orjson.loads(out)
        return report["total"], len(report["rows"])

    # The latest event, 23:10Z, is 16:10 on 2 March in Denver but 00:10 on 3 March in Paris.
    assert total_and_count("--timeframe", "today") == (5, 5)
    assert total_and_count("--timeframe", "today", "--timezone", "Europe/Paris") == (1, 1)
    assert total_and_count("--timeframe", "yesterday", "--timezone", "Europe/Paris") == (4, 4)
    assert total_and_count("--timeframe", "yesterday", "--now", "2028-03-03T12:00:00Z") == (5, 5)
    assert total_and_count("--limit", "2", "--offset", "1") == (5, 2)


def test_a_malformed_line_is_reported_with_its_number_and_exits_1(
    capsys: pytest.CaptureFixture[str], history_file: Path
) -> None:
    lines = history_file.read_text().splitlines()
    lines.insert(1, "this is not json")
    history_file.write_text("\n".join(lines) + "\n")

    code, out, err = run(capsys, "sequences", "list", "--history", str(history_file), "--json")

    assert code == 1
    assert f"{history_file}:2: not JSON" in err
    assert [r["contacts"] for r in orjson.loads(out)] == [1, 0]

    code, out, err = run(capsys, "history", "welcome", "--history", str(history_file), "--json")

    assert code == 1
    assert f"{history_file}:2: not JSON" in err
    assert orjson.loads(out)["total"] == 5


def test_a_file_bad_on_every_line_is_reported_in_twenty_lines_and_a_count(
    capsys: pytest.CaptureFixture[str], history_file: Path
) -> None:
    # a pretty-printed JSON file, say, given by mistake: every line is bad
    wrong = history_file.with_name("pretty.json")
    wrong.write_text("\n".join(["{"] + ['  "key": 1,'] * 500 + ["}"]) + "\n")

    code, _, err = run(capsys, "sequences", "list", "--history", str(wrong))

    assert code == 1
    lines = err.splitlines()
    assert [line.split(":")[2] for line in lines[:20]] == [str(n) for n in range(1, 21)]
    assert lines[20] == f"dripstream: {wrong}: 482 more bad lines not shown (502 in all)"


def test_control_characters_from_upstream_are_shown_as_escapes_in_the_table(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    given = Stream()
    given.defined("welcome", name="Welcome\x1b[2J", steps_count=1, line="line-main")
    given.enrolled("welcome", "c-1", T0, name="Ann\nFake row Lee\t")
    history = given.write(tmp_path / "out.jsonl")

    _, listed, _ = run(capsys, "sequences", "list", "--history", str(history))
    _, report, _ = run(capsys, "history", "welcome", "--history", str(history))

    assert "Welcome\\x1b[2J" in listed
    assert "\x1b" not in listed
    assert len(report.splitlines()) == 3  # header, the one row, the total
    assert "Ann\\nFake row Lee\\t (c-1)" in report


def test_an_unknown_sequence_exits_2(
    capsys: pytest.CaptureFixture[str], history_file: Path
) -> None:
    code, out, err = run(capsys, "history", "nope", "--history", str(history_file))

    assert (code, out) == (2, "")
    assert "unknown sequence 'nope'" in err


@pytest.mark.parametrize("command", [("sequences", "list"), ("history", "welcome")])
def test_without_a_history_file_or_database_url_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, command: tuple[str, ...]
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)

    code, _, err = run(capsys, *command)

    assert code == 2
    assert "--history FILE" in err
    assert "DATABASE_URL" in err


def test_a_missing_history_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "sequences", "list", "--history", str(tmp_path / "none.jsonl"))
    assert code == 2
    assert "cannot read" in err


@pytest.mark.parametrize(
    "flags",
    [
        ("--type", "sms"),
        ("--timeframe", "last_week"),
        ("--now", "tomorrow"),
        # a timeframe around the calendar's end cannot be counted: refused, no traceback
        ("--now", "9999-12-31T12:00:00Z", "--timeframe", "today"),
        ("--now", "0001-01-01T01:00:00Z", "--timeframe", "last_month"),
        ("--timezone", "Mars/Olympus"),
        ("--limit", "-1"),
    ],
)
def test_bad_flags_exit_2(
    capsys: pytest.CaptureFixture[str], history_file: Path, flags: tuple[str, ...]
) -> None:
    code, _, err = run(capsys, "history", "welcome", "--history", str(history_file), *flags)
    assert code == 2
    assert flags[0] in err


def test_command_groups_are_shared_whatever_the_registration_order() -> None:
    def add_apply(commands: Any) -> None:
        apply = get_or_create_group(commands, "sequences").add_parser("apply")
        apply.add_argument("file")
        apply.set_defaults(handler=lambda args: 0)

    for order in ((add_apply, register), (register, add_apply)):
        parser = argparse.ArgumentParser(prog="dripstream")
        commands = parser.add_subparsers(dest="command", required=True)
        for registrar in order:
            registrar(commands)

        assert parser.parse_args(["sequences", "apply", "f.yaml"]).file == "f.yaml"
        assert parser.parse_args(["sequences", "list", "--json"]).json is True


def test_a_plain_command_cannot_become_a_group() -> None:
    commands = argparse.ArgumentParser().add_subparsers()
    commands.add_parser("history")
    with pytest.raises(ValueError, match="not a group"):
        get_or_create_group(commands, "history")


def test_the_progress_bar_redraws_one_line_and_ends_it() -> None:
    stream = io.StringIO()
    bar = ProgressBar(10, stream, width=10)

    bar.update(5)
    bar.finish()
    bar.stop()

    assert stream.getvalue() == ("\r[#####.....]  50% 5/10 lines\r[##########] 100% 10/10 lines\n")


def test_rebuild_without_a_database_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, history_file: Path
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)

    code, _, err = run(capsys, "projections", "rebuild", "--history", str(history_file))

    assert code == 2
    assert err == "dripstream: no PostgreSQL: give --database-url URL or set DATABASE_URL\n"


def _definition_applied_live() -> dict[str, Any]:
    # stamped with the day `sequences apply` ran, years after the history pushed through
    applied = Stream().defined("welcome", at="2031-06-01T09:00:00Z")
    return {**applied, "id": "sequences-applied-live/0"}


CRM_CLOCK_A_YEAR_AHEAD = {
    "specversion": "1.0",
    "id": "crm-9",
    "source": "crm",
    "type": "contact.updated",
    "time": "2029-03-02T23:30:00Z",
    "subject": "c-100",
    "data": {"contact_id": "c-100", "state": "CO"},
}


def _provider_answer_on_the_wall_clock() -> dict[str, Any]:
    # a text of the history, answered by its provider when the effects processor sent it
    answer = Stream().scoped(
        "effect.failed",
        "welcome",
        "c-100",
        "2031-06-01T09:00:01Z",
        effect_id="fx:welcome:c-100:1:hello:1",
        effect_type="sms.send",
        reason="refused",
    )
    return {**answer, "id": "fx:welcome:c-100:1:hello:1/failed"}


@pytest.mark.parametrize(
    "later",
    [CRM_CLOCK_A_YEAR_AHEAD, _definition_applied_live(), _provider_answer_on_the_wall_clock()],
)
def test_only_decisions_about_contacts_move_the_timeframes(
    capsys: pytest.CaptureFixture[str], history_file: Path, later: dict[str, Any]
) -> None:
    # given a dump that also holds an event timed long after the history: a CRM fact whose
    # clock ran ahead, or a definition applied live today
    with history_file.open("ab") as dump:
        dump.write(orjson.dumps(later) + b"\n")
    # when today's history is asked for, without --now
    code, out, _ = run(
        capsys, "history", "welcome", "--history", str(history_file), "--json", "--timeframe",
        "today",
    )  # fmt: skip
    # then "today" is the day of the latest decision about the contacts
    assert code == 0
    assert orjson.loads(out)["total"] == 5


def test_several_history_files_are_read_in_order_and_each_bad_line_names_its_file(
    capsys: pytest.CaptureFixture[str], history_file: Path, tmp_path: Path
) -> None:
    # Given a replay's output and the outcomes the effects processor wrote for it
    answered = Stream()
    answered.scoped(
        "effect.failed",
        "welcome",
        "c-100",
        "2028-03-02T22:41:01Z",
        event_id="fx:welcome:c-100:1:hello:1/failed",
        effect_id="fx:welcome:c-100:1:hello:1",
        effect_type="sms.send",
        reason="data.from_number: is required",
    )
    outcomes = answered.write(tmp_path / "outcomes.jsonl")
    outcomes.write_text(outcomes.read_text() + "not json either\n")
    both = ("--history", str(history_file), "--history", str(outcomes))

    code, out, err = run(capsys, "history", "welcome", *both, "--type", "communication", "--json")

    assert code == 1
    assert f"{outcomes}:2: not JSON" in err
    assert [(r["action"], r["event"]) for r in orjson.loads(out)["rows"]] == [
        ("SMS failed: data.from_number: is required", "effect.failed"),
        ("SMS sent", "sms.send"),
    ]
    # and the sequences list reads them all the same (an outcome changes no count)
    code, out, _ = run(capsys, "sequences", "list", *both, "--json")
    assert code == 1
    assert [r["contacts"] for r in orjson.loads(out)] == [1, 0]


def test_a_rebuild_naming_a_file_that_is_not_there_says_which_before_connecting(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    there = Stream()
    there.defined("welcome")
    first = there.write(tmp_path / "a.jsonl")
    missing = tmp_path / "b.jsonl"
    code, _, err = run(
        capsys, "projections", "rebuild", "--history", str(first), "--history", str(missing)
    )
    assert code == 2
    assert f"cannot read {missing}: No such file or directory" in err


def test_joined_files_tell_each_line_back_by_its_own_file_and_number(tmp_path: Path) -> None:
    first, empty, last = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    first.write_bytes(b"1\n2")  # no final newline: the next file must not run into it
    empty.write_bytes(b"")
    last.write_bytes(b"3\n4\n")
    with joined([first, empty, last]) as stream:
        assert stream.path.read_bytes() == b"1\n2\n3\n4\n"
        assert [stream.origin(n) for n in (1, 2, 3, 4)] == [
            (first, 1),
            (first, 2),
            (last, 1),
            (last, 2),
        ]
    assert not stream.path.exists()  # the joined copy goes with the command


def test_a_history_file_starting_with_a_byte_order_mark_loses_no_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, history_file: Path
) -> None:
    marked = tmp_path / "marked.jsonl"
    marked.write_bytes(b"\xef\xbb\xbf" + history_file.read_bytes())
    for argv in (("sequences", "list"), ("history", "welcome")):
        expected = run(capsys, *argv, "--history", str(history_file))
        assert run(capsys, *argv, "--history", str(marked)) == expected
        assert expected[0] == 0


def test_an_ascii_terminal_gets_json_in_utf8_and_tables_with_stand_ins(tmp_path: Path) -> None:
    given = Stream()
    given.defined("welcome", name="Welcome")
    given.enrolled("welcome", "c-1", T0, name="José Núñez", phone="+17205550142")
    path = given.write(tmp_path / "out.jsonl")
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    command = [sys.executable, "-m", "ops.cli", "history", "welcome", "--history", str(path)]
    as_json = subprocess.run([*command, "--json"], capture_output=True, env=env, check=False)
    assert as_json.returncode == 0, as_json.stderr
    assert orjson.loads(as_json.stdout)["rows"][0]["contact_name"] == "José Núñez"
    table = subprocess.run(command, capture_output=True, env=env, check=False)
    assert table.returncode == 0, table.stderr
    assert b"Jos? N??ez" in table.stdout
