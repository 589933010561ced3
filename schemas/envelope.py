"""The CloudEvents 1.0 envelope in structured JSON mode: the one wire shape of every event."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

SPECVERSION = "1.0"
ENGINE_SOURCE = "dripstream"


@dataclass(frozen=True, slots=True)
class CloudEvent:
    """One event. `data` is the JSON object of the type's payload, already validated."""

    id: str
    source: str
    type: str
    time: datetime
    subject: str | None
    data: Mapping[str, Any]
    dataversion: int = 1
    extensions: Mapping[str, Any] = field(default_factory=dict)

    @property
    def identity(self) -> str:
        """The event's id and source together: CloudEvents makes an id unique only within
        its source, so two systems may both send an "e-1". Outputs are numbered from it."""
        return f"{self.id}@{self.source}"

    def to_json(self) -> dict[str, Any]:
        return self._fields(format_time(self.time))

    def _fields(self, time: str | datetime) -> dict[str, Any]:
        out: dict[str, Any] = {
            "specversion": SPECVERSION,
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "time": time,
        }
        if self.subject is not None:
            out["subject"] = self.subject
        out["dataversion"] = str(self.dataversion)
        out["datacontenttype"] = "application/json"
        out.update(self.extensions)
        out["data"] = self.data
        return out

    def encode(self) -> bytes:
        # orjson writes a UTC datetime as `format_time` does (Z, microseconds only when
        # there are any), several times faster; this runs for every event published.
        moment = self.time if self.time.tzinfo is UTC else self.time.astimezone(UTC)
        return orjson.dumps(self._fields(moment), option=orjson.OPT_UTC_Z)


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a `Z`; microseconds only when there are any."""
    utc = moment if moment.tzinfo is UTC else moment.astimezone(UTC)
    # isoformat is several times faster than strftime, and this runs for every event;
    # in UTC it always ends in "+00:00".
    return utc.isoformat()[:-6] + "Z"


def parse_time(text: str) -> datetime:
    """RFC 3339 to an aware UTC datetime; raises ValueError for anything else."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"time {text!r} has no UTC offset")
    return moment.astimezone(UTC)
