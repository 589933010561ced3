"""`dripstream produce`: which topic and key each line is published with (no broker: the
publishing step is replaced by one that keeps what it was given)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ops import kafka_cli
from ops.cli import build_parser

Published = list[tuple[str, bytes | None, bytes]]

INVALID_WITH_SUBJECT = (
    b'{"specversion":"1.0","id":"bad-1","source":"crm","type":"contact.tag_added",'
    b'"time":"2028-03-02T22:41:30Z","subject":"c-200","data":{"contact_id":"c-200"}}'
)
VALID = (
    b'{"specversion":"1.0","id":"ok-1","source":"crm","type":"contact.tag_added",'
    b'"time":"2028-03-02T22:41:30Z","subject":"c-201","data":{"contact_id":"c-201","tag":"hot"}}'
)


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> Published:
    kept: Published = []

    async def keep(
        bootstrap: str, prefix: str, records: Published, *, watermarks: bool = False
    ) -> None:
        kept.extend(records)

    monkeypatch.setattr(kafka_cli, "_send", keep)
    return kept


def _produce(path: Path, *flags: str) -> int:
    args = build_parser("produce").parse_args(["produce", *flags, str(path)])
    code: int = args.handler(args)
    return code


def test_raw_invalid_lines_are_keyed_by_their_subject_when_they_have_one(
    tmp_path: Path, published: Published
) -> None:
    # given a file of a valid line and invalid ones: with a subject, a non-string one, none,
    # an array, and not JSON at all
    lines = [
        VALID,
        INVALID_WITH_SUBJECT,
        b'{"type":"contact.tag_added","subject":42}',
        b'{"type":"message.received"}',
        b'["c-9"]',
        b"{not json",
    ]
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    # when it is published as it is
    assert _produce(events, "--raw") == 0
    # then each line went out once, in order, keyed by its string subject or by nothing
    assert [(topic, key) for topic, key, _ in published] == [
        ("contacts", b"c-201"),
        ("contacts", b"c-200"),
        ("contacts", None),
        ("messages", None),
        ("commands", None),
        ("commands", None),
    ]
    assert [value for _, _, value in published] == lines


def test_without_raw_an_invalid_line_is_reported_and_not_published(
    tmp_path: Path, published: Published, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(INVALID_WITH_SUBJECT + b"\n" + VALID + b"\n")
    assert _produce(events) == 1
    assert [(topic, key) for topic, key, _ in published] == [("contacts", b"c-201")]
    assert "line 1: data.tag: is required" in capsys.readouterr().err
