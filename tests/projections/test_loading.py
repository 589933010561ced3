"""Reading an output file: every line an event or a reported error, the rest still loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from projections.history import HistoryQuery
from projections.loading import load_file
from projections.stream import LineError, MalformedEventError, OutputEvent, count_lines
from tests.projections.helpers import Stream

T0 = "2028-03-02T10:00:00Z"


def test_lines_that_are_not_events_are_reported_by_number_and_the_rest_loads(
    tmp_path: Path,
) -> None:
    given = Stream()
    given.defined("w")
    given.enrolled("w", "c-1", T0)
    given.enrolled("w", "c-2", T0)
    path = given.write(
        tmp_path / "out.jsonl",
        extra_lines=(
            (2, "{not json"),
            (3, "[1, 2]"),
            (5, '{"type": "x", "time": "yesterday", "data": {}}'),
            (6, ""),
            (7, '{"type": "x", "time": "2028-03-02T10:00:00Z"}'),
        ),
    )

    models, errors = load_file(path)

    assert [(e.line, e.reason.split(" ")[0]) for e in errors] == [
        (2, "not"),
        (3, "not"),
        (5, "time:"),
        (7, "data:"),
    ]
    assert errors[2].describe(path) == f"{path}:5: time: 'yesterday' is not RFC 3339"
    assert [(r.id, r.contacts) for r in models.sequences.rows()] == [("w", 2)]
    page = models.history.query(HistoryQuery("w"))
    assert page is not None
    assert page.total == 2
    assert models.contacts.contact("c-2") is not None


@pytest.mark.parametrize("moment", ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z"])
def test_a_time_past_the_engines_range_is_a_bad_line_not_a_crash_later(
    tmp_path: Path, moment: str
) -> None:
    # A timeframe a month past the calendar's edge would leave what a datetime can hold.
    given = Stream()
    given.defined("w")
    given.enrolled("w", "c-1", T0)
    line = f'{{"type": "enrollment.enrolled", "time": "{moment}", "data": {{"sequence_id": "w"}}}}'
    path = given.write(tmp_path / "out.jsonl", extra_lines=((3, line),))

    models, errors = load_file(path)

    assert [e.describe(path) for e in errors] == [
        f"{path}:3: time: '{moment}' must be between 1900-01-01T00:00:00Z and 9000-12-31T23:59:59Z"
    ]
    assert [(r.id, r.contacts) for r in models.sequences.rows()] == [("w", 1)]


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ("text", "not a JSON object"),
        ({"time": T0, "data": {}}, "type: is required"),
        ({"type": "a", "data": {}}, "time: is required"),
        ({"type": "a", "time": "2028-03-02T10:00:00", "data": {}}, "time: "),
        ({"type": "a", "time": T0, "data": []}, "data: is required"),
    ],
)
def test_a_record_without_type_time_and_data_is_malformed(obj: object, reason: str) -> None:
    with pytest.raises(MalformedEventError, match=reason):
        OutputEvent.from_json(obj)


def test_count_lines_counts_a_last_line_without_a_newline(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"a\nb\nc")
    assert count_lines(path) == 3
    path.write_bytes(b"a\nb\n")
    assert count_lines(path) == 2


def test_line_errors_name_the_file_and_line() -> None:
    assert LineError(4, "not JSON").describe("x.jsonl") == "x.jsonl:4: not JSON"
