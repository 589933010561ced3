"""`sequences show` and `sequences contacts` on the command line: given an output file the
engine wrote, then this text, this JSON, this exit code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from ops.cli import main
from tests.projections.drip_scenario import drip_outputs, without_definitions, write
from tests.projections.test_readmodel_cli import run
from tests.projections.test_sequence_views import published_definition

SHOWN = """\
drip: Drip
  description  Two touches and a tag
  created      2028-03-01T14:00:00Z
  status       active
  contacts     2 enrolled, 4 remaining tasks

Settings
  process_on                          business_days
  run_on_holidays                     false
  schedule                            09:00-17:00 the contact's time (America/New_York when \
the contact's zone is unknown)
  enroll_only_within_hours            false
  prevent_enrollment_if_communicated  false
  outbound_line                       line-1
  throttle_per_minute                 30
  remove_on_response                  true
  remove_on_manual_call               true
  remove_on_opt_out                   true
  intake_address                      drip-leads@intake.example.com

Steps
  1. s1  send_sms  at once after enrollment
      text: Hi [FirstName]!
  2. s2  email_contact  2 hours after step s1
      subject: Hello
      body: Line one
            Line two
  3. s3  add_tag  at 10:00 the contact's time, 1 day after step s2
      tag: dripped

Triggers
  TYPE                 VALUES                          ACTION
  contact_tagged       tags: hot, warm                 enroll
  contact_disposition  dispositions: won               disenroll
  call_duration        metric: talk_time; seconds: 60  disenroll
"""

ENROLLED = """\
CONTACT  NAME     PHONE         EMAIL            ENROLLED AT                STEPS  NEXT STEP  DUE
c-2      Bob Ray  +12125550102  -                2028-03-01T10:00:00-05:00  1/3    s2         \
2028-03-01T12:00:00-05:00
c-1      Ann Lee  +12125550101  ann@example.com  2028-03-01T10:05:00-05:00  1/3    s2         \
2028-03-01T12:05:00-05:00
Total: 2
"""


@pytest.fixture
def out_file(tmp_path: Path) -> Path:
    return write(drip_outputs(), tmp_path / "out.jsonl")


def json_of(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = run(capsys, *argv)
    assert (code, err) == (0, "")
    return orjson.loads(out)


# --- sequences show ---------------------------------------------------------------------------


def test_show_prints_the_facts_then_the_settings_steps_and_triggers(
    capsys: pytest.CaptureFixture[str], out_file: Path
) -> None:
    assert run(capsys, "sequences", "show", "drip", "--history", str(out_file)) == (0, SHOWN, "")


def test_show_json_is_the_lists_row_and_the_definition_as_published(
    capsys: pytest.CaptureFixture[str], out_file: Path
) -> None:
    shown = json_of(capsys, "sequences", "show", "drip", "--history", str(out_file), "--json")
    (row,) = [
        r
        for r in json_of(capsys, "sequences", "list", "--history", str(out_file), "--json")
        if r["id"] == "drip"
    ]

    assert shown == {
        **row,
        "description": "Two touches and a tag",
        "definition": shown["definition"],
    }
    assert shown["definition"] == published_definition(drip_outputs(), "drip")
    assert list(shown) == ["id", "name", "description", *list(row)[2:], "definition"]


def test_show_of_an_invalid_sequence_lists_its_problems(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    events = drip_outputs()
    defined = next(e for e in events if e["data"].get("sequence_id") == "drip")
    defined["data"].update(
        status="invalid", problems=["step s1 (send_sms): needs the sequence's outbound_line"]
    )
    path = write(events, tmp_path / "out.jsonl")

    code, out, _ = run(capsys, "sequences", "show", "drip", "--history", str(path))

    assert code == 0
    assert "  status       invalid\n" in out
    assert "  problems     step s1 (send_sms): needs the sequence's outbound_line\n" in out


def test_show_of_a_stream_without_the_definition_says_so_and_shows_the_list_columns(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write(without_definitions(drip_outputs()), tmp_path / "old.jsonl")

    code, out, err = run(capsys, "sequences", "show", "drip", "--history", str(path))

    assert (code, err) == (0, "")
    assert out == (
        "drip: Drip\n"
        "  description  Two touches and a tag\n"
        "  created      2028-03-01T14:00:00Z\n"
        "  status       active\n"
        "  contacts     2 enrolled, 4 remaining tasks\n"
        "  steps        3\n"
        "  process on   business_days\n"
        "  line         line-1\n"
        "\n"
        f"The settings, steps and triggers are not in {path}: its sequence.defined carries no"
        " `definition` (written by an engine from before the definition was published).\n"
    )
    shown = json_of(capsys, "sequences", "show", "drip", "--history", str(path), "--json")
    assert shown["definition"] is None


def test_a_deleted_sequence_is_refused_as_history_refuses_an_unknown_one(
    capsys: pytest.CaptureFixture[str], out_file: Path
) -> None:
    source = ("--history", str(out_file))
    unknown_history = run(capsys, "history", "nope", *source)

    for command in ("show", "contacts"):
        unknown = run(capsys, "sequences", command, "nope", *source)
        deleted = run(capsys, "sequences", command, "gone", *source)

        assert (
            unknown
            == unknown_history
            == (
                2,
                "",
                f"dripstream: unknown sequence 'nope': no such sequence in {out_file}\n",
            )
        )
        assert deleted == (
            2,
            "",
            f"dripstream: unknown sequence 'gone': deleted in {out_file} (its history stays"
            f" readable: `dripstream history gone --history {out_file}`)\n",
        )
    assert run(capsys, "history", "gone", *source)[0] == 0


def test_a_bad_line_is_reported_and_the_rest_still_shows(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b"not json\n" + write(drip_outputs(), tmp_path / "good.jsonl").read_bytes())

    code, out, err = run(capsys, "sequences", "show", "drip", "--history", str(path))

    assert (code, out) == (1, SHOWN)
    assert f"{path}:1: not JSON" in err


def test_the_history_files_are_read_in_the_order_given(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    events = drip_outputs()
    first = write(events[:20], tmp_path / "first.jsonl")
    rest = write(events[20:], tmp_path / "rest.jsonl")

    code, out, _ = run(
        capsys, "sequences", "show", "drip", "--history", str(first), "--history", str(rest)
    )

    assert (code, out) == (0, SHOWN)


def test_the_dripstream_command_has_both_views(
    capsys: pytest.CaptureFixture[str], out_file: Path
) -> None:
    assert main(["sequences", "show", "drip", "--history", str(out_file)]) == 0
    assert capsys.readouterr().out == SHOWN
    assert main(["sequences", "contacts", "drip", "--history", str(out_file)]) == 0
    assert capsys.readouterr().out == ENROLLED


# --- sequences contacts -----------------------------------------------------------------------


def test_contacts_prints_the_active_enrollments_in_the_accounts_zone_with_the_total(
    capsys: pytest.CaptureFixture[str], out_file: Path
) -> None:
    assert run(capsys, "sequences", "contacts", "drip", "--history", str(out_file)) == (
        0,
        ENROLLED,
        "",
    )


def test_contacts_all_adds_the_ended_ones_with_state_reason_and_end(
    capsys: pytest.CaptureFixture[str], out_file: Path
) -> None:
    code, out, _ = run(capsys, "sequences", "contacts", "drip", "--history", str(out_file), "--all")

    assert code == 0
    header, *rows, total = out.splitlines()
    assert [h.strip() for h in header.split("  ") if h.strip()] == [
        "CONTACT",
        "NAME",
        "PHONE",
        "EMAIL",
        "ENROLLED AT",
        "STATE",
        "REASON",
        "ENDED AT",
        "STEPS",
        "NEXT STEP",
        "DUE",
    ]
    assert [row.split()[0] for row in rows] == ["c-2", "c-1", "c-3"]
    assert rows[2].split()[5:9] == [
        "2028-03-01T10:05:00-05:00",
        "disenrolled",
        "trigger",
        "2028-03-01T10:30:00-05:00",
    ]
    assert total == "Total: 3"


def test_contacts_json_is_the_page_with_the_total_before_limit_and_offset(
    capsys: pytest.CaptureFixture[str], out_file: Path
) -> None:
    source = ("--history", str(out_file))

    page = json_of(capsys, "sequences", "contacts", "drip", *source, "--json", "--all")
    paged = json_of(
        capsys,
        "sequences",
        "contacts",
        "drip",
        *source,
        "--json",
        "--all",
        "--limit",
        "1",
        "--offset",
        "1",
    )

    assert [(r["contact_id"], r["state"], r["reason"]) for r in page["rows"]] == [
        ("c-2", "active", None),
        ("c-1", "active", None),
        ("c-3", "disenrolled", "trigger"),
    ]
    assert (page["sequence_id"], page["total"]) == ("drip", 3)
    assert paged == {**page, "rows": page["rows"][1:2]}


def test_contacts_of_a_sequence_nobody_is_in_is_an_empty_table(
    capsys: pytest.CaptureFixture[str], out_file: Path
) -> None:
    code, out, _ = run(capsys, "sequences", "contacts", "idle", "--history", str(out_file))
    assert (code, out.splitlines()[1:]) == (0, ["Total: 0"])
