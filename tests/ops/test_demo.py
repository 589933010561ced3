"""`dripstream demo`: the bundled day through the engine, the fake providers and the read models."""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from ops import demo_cli
from ops.cli import main as dripstream
from schemas.definitions import load_definition_file
from schemas.validation import EventRejected, decode_event

SEQUENCES = demo_cli.BUNDLED_SEQUENCES
EVENTS = demo_cli.BUNDLED_EVENTS


def run(handler_argv: list[str] | None = None, *, cli: list[str] | None = None) -> tuple[int, str]:
    """The exit status and stdout of `dripstream demo ARGV` (or of another command via `cli`)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        if cli is not None:
            status = dripstream(cli)
        else:
            parser = argparse.ArgumentParser(prog="dripstream")
            demo_cli.register(parser.add_subparsers(dest="command", required=True))
            args = parser.parse_args(["demo", *(handler_argv or [])])
            status = args.handler(args)
    return status, out.getvalue()


def table_after(text: str, heading: str) -> tuple[str, list[str]]:
    """The header and rows of the first table printed after a heading line."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    header = start + 2  # the heading, its underline, then the table
    rows = []
    for line in lines[header + 1 :]:
        if not line.strip() or line.startswith("Total:"):
            break
        rows.append(line)
    return lines[header], rows


def column(header: str, rows: list[str], name: str) -> list[str]:
    at = header.index(name)
    return [row[at:].split()[0] for row in rows]


def bundled_sequence_ids() -> list[str]:
    return [sequence["id"] for sequence in load_definition_file(SEQUENCES)["sequences"]]


def bundled_events() -> list[dict[str, Any]]:
    events = []
    for raw in EVENTS.read_bytes().splitlines():
        with contextlib.suppress(EventRejected):
            events.append(decode_event(raw).to_json())
    return events


@pytest.fixture(scope="module")
def printed() -> str:
    status, text = run()
    assert status == 0
    return text


@pytest.fixture(scope="module")
def summary() -> dict[str, Any]:
    status, text = run(["--json"])
    assert status == 0
    document: dict[str, Any] = json.loads(text)
    return document


def test_the_bundled_files_are_valid_and_a_day_long() -> None:
    assert 4 <= len(bundled_sequence_ids()) <= 5
    lines = [line for line in EVENTS.read_bytes().splitlines() if line.strip()]
    assert 150 <= len(lines) <= 300
    events = bundled_events()
    times = [event["time"] for event in events]
    assert times == sorted(times)
    assert {"lead.email_received", "enrollment.requested", "appointment.changed"} <= {
        event["type"] for event in events
    }


def test_the_demo_prints_the_sequences_page_with_every_bundled_sequence(printed: str) -> None:
    header, rows = table_after(printed, "Sequences (dripstream sequences list)")
    assert header.split()[:3] == ["ID", "NAME", "CREATED"]
    assert column(header, rows, "ID") == sorted(bundled_sequence_ids())
    assert set(column(header, rows, "STATUS")) == {"active"}


def test_the_demo_prints_the_history_of_the_busiest_sequence(printed: str) -> None:
    header, rows = table_after(printed, "History of ")
    assert header.split() == ["CONTACT", "ACTION", "EVENT", "TIME"]
    assert len(rows) == demo_cli.HISTORY_ROWS
    totals = [line for line in printed.splitlines() if line.startswith("Total: ")]
    assert len(totals) == 1
    assert int(totals[0].removeprefix("Total: ")) > demo_cli.HISTORY_ROWS


def test_texts_to_bundled_contacts_carry_the_opt_out_phrase(summary: dict[str, Any]) -> None:
    phrase = load_definition_file(SEQUENCES)["account"]["opt_out_phrase"]
    phones = {
        event["data"]["phone"]
        for event in bundled_events()
        if event["type"] == "contact.created" and event["data"].get("phone")
    }
    texts = [
        request
        for request in summary["effects"]["requests"]
        if request["channel"] == "sms.send" and request["to"] in phones
    ]
    assert texts
    assert all(request["text"].endswith(phrase) for request in texts)


def test_what_would_have_been_sent_lists_each_request_and_its_outcome(
    printed: str, summary: dict[str, Any]
) -> None:
    header, rows = table_after(printed, "What would have been sent")
    assert header.split() == ["TIME", "CHANNEL", "TO", "TEXT", "EFFECT", "ID", "OUTCOME"]
    assert len(rows) == len(summary["effects"]["requests"])
    assert "sms.send" in column(header, rows, "CHANNEL")
    assert all(effect_id.startswith("fx:") for effect_id in column(header, rows, "EFFECT ID"))
    assert set(summary["effects"]["outcomes"]) <= {"effect.sent", "effect.failed"}
    assert summary["effects"]["outcomes"]["effect.failed"] == 1  # the landline's text


def test_a_second_delivery_of_every_command_sends_nothing(
    printed: str, summary: dict[str, Any]
) -> None:
    again = summary["effects"]["second_pass"]
    assert again["new_requests"] == 0
    assert again["outcomes"] == summary["effects"]["commands"]
    assert again["identical"] is True
    assert "made 0 new provider requests" in printed


def test_rejected_lines_are_reported_with_line_number_and_reason(printed: str) -> None:
    expected = []
    for number, raw in enumerate(EVENTS.read_bytes().splitlines(), start=1):
        try:
            decode_event(raw)
        except EventRejected as rejected:
            expected.append(f"  line {number}: {rejected}")
    assert 1 <= len(expected) <= 2
    section = printed[printed.index("Rejected input lines") :]
    assert [line for line in section.splitlines() if line.startswith("  line ")] == expected
    assert "on purpose" in section


def test_out_writes_files_the_read_model_commands_agree_with(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    status, printed = run(["--out", str(out)])
    assert status == 0
    for name in ("decisions.jsonl", "outcomes.jsonl", "rejected.jsonl"):
        assert (out / name).stat().st_size > 0
    decisions = out / "decisions.jsonl"
    assert f"dripstream sequences list --history {decisions}" in printed
    follow_up = next(
        line for line in printed.splitlines() if line.startswith("  dripstream history ")
    )

    header, rows = table_after(printed, "Sequences (dripstream sequences list)")
    shown = dict(zip(column(header, rows, "ID"), column(header, rows, "CONTACTS"), strict=True))
    status, listed = run(cli=["sequences", "list", "--history", str(decisions), "--json"])
    assert status == 0
    assert {row["id"]: str(row["contacts"]) for row in json.loads(listed)} == shown

    status, history = run(cli=follow_up.split()[1:])
    assert status == 0
    assert history.splitlines()[-1] in printed.splitlines()  # the same `Total: N`

    rejected = [orjson.loads(line) for line in (out / "rejected.jsonl").read_bytes().splitlines()]
    assert [f"line {r['line']}: {r['field']}: {r['reason']}" for r in rejected] == [
        line.strip() for line in printed.splitlines() if line.startswith("  line ")
    ]


def test_the_same_input_prints_the_same_report(tmp_path: Path) -> None:
    first = run(["--out", str(tmp_path)])
    second = run(["--out", str(tmp_path)])
    assert first == second
    assert first[0] == 0


def test_own_files_with_a_bad_line_exit_1(tmp_path: Path) -> None:
    sequences = tmp_path / "sequences.yaml"
    sequences.write_text(
        "account: {timezone: America/Chicago, opt_out_phrase: 'Text STOP to end.'}\n"
        "sequences:\n"
        "  - id: hello\n"
        "    name: Hello\n"
        "    process_on: every_day\n"
        "    outbound_line: main\n"
        "    steps: [{id: hi, type: send_sms, text: 'Hi [FirstName]'}]\n"
        "    triggers: [{type: contact_created}]\n"
    )
    sequences.write_text(
        sequences.read_text().replace("account: {", "account: {lines: {main: '+13125550100'}, ")
    )
    events = tmp_path / "events.jsonl"
    contact = {
        "specversion": "1.0",
        "id": "e-1",
        "source": "crm",
        "type": "contact.created",
        "time": "2027-10-12T15:00:00Z",
        "subject": "c-1",
        "data": {"contact_id": "c-1", "first_name": "Ada", "phone": "+13125550111"},
    }
    events.write_bytes(orjson.dumps(contact) + b"\n{not json\n")

    status, text = run(["--sequences", str(sequences), "--events", str(events), "--json"])

    assert status == 1
    document = json.loads(text)
    assert [row["id"] for row in document["sequences"]] == ["hello"]
    assert [r["text"] for r in document["effects"]["requests"]] == ["Hi Ada Text STOP to end."]
    assert [r["line"] for r in document["rejected"]] == [2]
    assert document["until"] == "2027-10-13T04:59:59Z"  # the end of that day in Chicago


def test_a_rejected_line_keeps_its_exact_bytes_line_ending_included(tmp_path: Path) -> None:
    # The README: raw_base64 holds "the exact bytes of the line as read (its line ending
    # included)", as `replay --dlq` writes it.
    events = tmp_path / "events.jsonl"
    events.write_bytes(b'{"bad":1}\r\n{not json\n')
    status, _ = run(["--events", str(events), "--out", str(tmp_path / "out")])
    assert status == 1
    letters = (tmp_path / "out" / "rejected.jsonl").read_bytes().splitlines()
    assert [base64.b64decode(orjson.loads(line)["raw_base64"]) for line in letters] == [
        b'{"bad":1}\r\n',
        b"{not json\n",
    ]


def test_a_refused_definition_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sequences = tmp_path / "bad.yaml"
    sequences.write_text("account: {timezone: Mars/Olympus, opt_out_phrase: x}\nsequences: []\n")

    status, text = run(["--sequences", str(sequences)])

    assert status == 2
    assert text == ""
    assert "account.timezone" in capsys.readouterr().err


def test_a_reader_that_stops_early_gets_no_traceback() -> None:
    # `dripstream demo --json | head -c 10`: the pipe closes while the summary is written.
    reader = subprocess.Popen(
        [sys.executable, "-m", "ops.cli", "demo", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert reader.stdout is not None
    assert reader.stderr is not None
    assert reader.stdout.read(10).startswith(b"{")
    reader.stdout.close()
    status = reader.wait(timeout=120)
    err = reader.stderr.read().decode()
    assert "Traceback" not in err
    assert status == 0


def test_bad_lines_of_ones_own_events_are_said_on_stderr_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # (the report, which lists them too, may go to a file; replay says them on stderr)
    events = tmp_path / "events.jsonl"
    events.write_bytes(b'garbage\n{"x": 1}\n')
    code, _report = run(["--events", str(events)])
    assert code == 1
    said = capsys.readouterr().err
    assert "line 1: event: not valid JSON" in said
    assert "line 2: specversion: is required" in said
