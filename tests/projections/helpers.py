"""One small helper for read-model tests: given output events, written the way the engine
writes them (CloudEvents dicts with ids, sequence-scoped data and enrollment ids)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

DEFINED_AT = "2028-03-01T00:00:00Z"


def enrollment_id(sequence_id: str, contact_id: str, n: int = 1) -> str:
    return f"{sequence_id}:{contact_id}:{n}"


class Stream:
    """`given = Stream(); given.defined("welcome"); given.enrolled("welcome", "c-1", at)...`"""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def add(
        self,
        kind: str,
        at: str,
        *,
        source: str = "dripstream",
        event_id: str | None = None,
        subject: str | None = None,
        **data: Any,
    ) -> dict[str, Any]:
        if subject is None:
            subject = data.get("contact_id") or f"sequence:{data.get('sequence_id')}"
        event = {
            "specversion": "1.0",
            # As the engine numbers one cause's outputs: rows of one time, newest-written first.
            "id": event_id or f"in/{len(self.events) + 1}",
            "source": source,
            "type": kind,
            "time": at,
            "subject": subject,
            "dataversion": "1",
            "datacontenttype": "application/json",
            "data": data,
        }
        self.events.append(event)
        return event

    def defined(self, sequence_id: str, at: str = DEFINED_AT, **settings: Any) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": f"Sequence {sequence_id}",
            "description": "",
            "created": at,
            "steps_count": 3,
            "process_on": "every_day",
            "line": "line-1",
            "status": "active",
            "problems": [],
            "triggers": ["contact_tagged"],
            "intake_address": None,
        }
        data.update(settings)
        return self.add("sequence.defined", at, sequence_id=sequence_id, **data)

    def deleted(self, sequence_id: str, at: str) -> dict[str, Any]:
        return self.add("sequence.deleted", at, sequence_id=sequence_id)

    def enrolled(
        self,
        sequence_id: str,
        contact_id: str,
        at: str,
        *,
        n: int = 1,
        steps_total: int | None = 3,
        via: str = "manual",
        name: str | None = None,
        phone: str | None = None,
        email: str | None = None,
    ) -> dict[str, Any]:
        data: dict[str, Any] = {
            "enrollment_id": enrollment_id(sequence_id, contact_id, n),
            "via": via,
            "contact_name": name,
            "contact_phone": phone,
            "contact_email": email,
        }
        if steps_total is not None:
            data["steps_total"] = steps_total
        return self.add(
            "enrollment.enrolled", at, sequence_id=sequence_id, contact_id=contact_id, **data
        )

    def scoped(
        self, kind: str, sequence_id: str, contact_id: str, at: str, *, n: int = 1, **data: Any
    ) -> dict[str, Any]:
        """Any enrollment-scoped output (steps, effects, engine contact changes)."""
        return self.add(
            kind,
            at,
            sequence_id=sequence_id,
            contact_id=contact_id,
            enrollment_id=enrollment_id(sequence_id, contact_id, n),
            **data,
        )

    def step(
        self, verb: str, sequence_id: str, contact_id: str, step_id: str, at: str, **data: Any
    ) -> dict[str, Any]:
        return self.scoped(f"step.{verb}", sequence_id, contact_id, at, step_id=step_id, **data)

    def completed(self, sequence_id: str, contact_id: str, at: str, n: int = 1) -> dict[str, Any]:
        return self.scoped("enrollment.completed", sequence_id, contact_id, at, n=n)

    def disenrolled(
        self, sequence_id: str, contact_id: str, at: str, reason: str = "responded", n: int = 1
    ) -> dict[str, Any]:
        return self.scoped(
            "enrollment.disenrolled", sequence_id, contact_id, at, n=n, reason=reason
        )

    def write(self, path: Path, *, extra_lines: tuple[tuple[int, str], ...] = ()) -> Path:
        """Write as .jsonl; `extra_lines` puts raw text at 1-based line numbers."""
        lines = [orjson.dumps(e).decode() for e in self.events]
        for number, text in extra_lines:
            lines.insert(number - 1, text)
        path.write_text("\n".join(lines) + "\n")
        return path


def a_passed_step_removed() -> Stream:
    # an enrollment that has passed s1 of s1-s3, then s1 removed: s2 and s3 are still to do
    given = Stream()
    given.defined("w", steps_count=3, step_ids=["s1", "s2", "s3"])
    given.enrolled("w", "c-1", "2028-03-02T10:00:00Z", steps_total=3)
    given.step("executed", "w", "c-1", "s1", "2028-03-02T10:00:00Z")
    given.defined("w", "2028-03-02T10:00:00Z", steps_count=2, step_ids=["s2", "s3"])
    return given
