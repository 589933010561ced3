"""The read commands' plain tables line up in a terminal, whatever script the data is in."""

from __future__ import annotations

import pytest

from ops.text_table import columns, table


@pytest.mark.parametrize(
    ("text", "width"),
    [("Li", 2), ("Li 王", 5), ("\uff21\uff22", 4), ("José", 4), ("Jose\u0301", 4), ("", 0)],
)
def test_columns_count_what_a_terminal_shows(text: str, width: int) -> None:
    assert columns(text) == width


def test_a_wide_name_keeps_the_next_column_in_line() -> None:
    out = table(["NAME", "PHONE"], [["Li 王", "+1"], ["Ann Lee", "+2"]])

    rows = out.splitlines()
    assert rows == ["NAME     PHONE", "Li 王    +1", "Ann Lee  +2"]
    assert {columns(row[: row.index("+")]) for row in rows[1:]} == {9}


def test_control_characters_are_shown_as_escapes() -> None:
    assert table(["A"], [["x\ny\x1b"]]) == "A\nx\\ny\\x1b\n"
