"""Plain-text tables and times for the read-model commands: columns two spaces apart, an empty
value as `-`, a time in the account's zone."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from schemas.envelope import format_time


def cell(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


# Control characters from upstream data (a name with a newline, a tab or an ESC) would
# break a row or reach the terminal as an escape sequence: shown as escapes instead.
_VISIBLE = {
    code: {"\t": "\\t", "\n": "\\n", "\r": "\\r"}.get(chr(code), f"\\x{code:02x}")
    for code in (*range(0x20), *range(0x7F, 0xA0))
}


def columns(text: str) -> int:
    """How many terminal columns `text` takes: East Asian wide and full-width characters
    take two, combining marks none (`len` would put the columns after `Li 王` out of line)."""
    if text.isascii():
        return len(text)
    return sum(
        0 if unicodedata.combining(char) else 2 if unicodedata.east_asian_width(char) in "WF" else 1
        for char in text
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = [list(headers), *([c.translate(_VISIBLE) for c in row] for row in rows)]
    widths = [max(columns(line[i]) for line in lines) for i in range(len(headers))]
    return "".join(
        "  ".join(
            c + " " * (width - columns(c)) for c, width in zip(line, widths, strict=True)
        ).rstrip()
        + "\n"
        for line in lines
    )


def local_time(moment: datetime, zone: ZoneInfo) -> str:
    if zone.key == "UTC":
        return format_time(moment)
    return moment.astimezone(zone).isoformat(timespec="seconds")
