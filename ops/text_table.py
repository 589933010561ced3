"""Plain-text tables and times for the read-model commands: columns two spaces apart, an empty
value as `-`, a time in the account's zone."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from schemas.envelope import format_time


def cell(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    lines = [headers, *rows]
    return "".join(
        "  ".join(c.ljust(width) for c, width in zip(line, widths, strict=True)).rstrip() + "\n"
        for line in lines
    )


def local_time(moment: datetime, zone: ZoneInfo) -> str:
    if zone.key == "UTC":
        return format_time(moment)
    return moment.astimezone(zone).isoformat(timespec="seconds")
