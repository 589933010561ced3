"""`dripstream replay` on files: a sequence file with no account, and the dead-letter file."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import orjson
import pytest

from ops.cli import main

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
    return (
        status,
        [orjson.loads(line) for line in out.read_bytes().splitlines()],
        [orjson.loads(line) for line in dlq.read_bytes().splitlines()],
    )


def good_lines() -> list[bytes]:
    return [orjson.dumps(event) for event in GOOD_LINES]


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


def test_a_line_that_is_not_utf8_loses_its_bytes_in_raw_but_not_in_raw_base64(
    tmp_path: Path,
) -> None:
    bad = b"\xff\xfe{}"

    _, _, dead = replay(tmp_path, ONLY_SEQUENCES, [bad])

    assert dead[0]["raw"] == "\ufffd\ufffd{}\n"
    assert dead[0]["raw_base64"] == "//57fQo="
