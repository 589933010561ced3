"""One sequence as its three-dot menu shows it: the list's columns, its description, and the
whole definition in force (settings, steps with their settings, triggers) that
`sequence.defined` carries; None for a definition from a stream written before it did."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from projections.sequences_list import SequenceRow, sequence_rows
from projections.state import Catalog, EnrollmentBook, SequenceInfo

# The keys in the order of a sequence file (CONTRACT.md §2), then any others by name. jsonb
# keeps no order, so both read models give a definition in this one: the same file and
# the same database answer alike, and the JSON reads as the file does.
SEQUENCE_KEYS = (
    "id",
    "name",
    "description",
    "created",
    "process_on",
    "run_on_holidays",
    "schedule",
    "prevent_enrollment_if_communicated",
    "outbound_line",
    "throttle_per_minute",
    "remove_on_response",
    "remove_on_manual_call",
    "remove_on_opt_out",
    "intake_address",
    "steps",
    "triggers",
)
SCHEDULE_KEYS = ("timezone", "open", "close", "enroll_only_within_hours")
# A step's settings: whom it reaches first, then what it says or does.
STEP_KEYS = (
    "id",
    "type",
    "delay",
    "ring_group",
    "user_id",
    "all_users",
    "text",
    "media_url",
    "subject",
    "body",
    "message",
    "repeat_message",
    "recording_url",
    "url",
)
DELAY_KEYS = ("kind", "amount", "unit", "days", "at")
TRIGGER_KEYS = ("type",)
TRIGGER_LAST_KEYS = ("action",)


@dataclass(frozen=True, slots=True)
class SequenceDetail:
    row: SequenceRow
    description: str | None
    definition: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        row = self.row.to_json()
        return {
            "id": row.pop("id"),
            "name": row.pop("name"),
            "description": self.description,
            **row,
            "definition": self.definition,
        }


def sequence_detail(info: SequenceInfo, row: SequenceRow) -> SequenceDetail:
    return SequenceDetail(
        row=row,
        description=info.description,
        definition=None if info.definition is None else ordered_definition(info.definition),
    )


def detail_of(catalog: Catalog, book: EnrollmentBook, sequence_id: str) -> SequenceDetail:
    """The sequence's detail from the in-memory folds; UnknownSequenceError for one the list
    does not show (never defined, or deleted)."""
    info = catalog.shown(sequence_id)
    # The list's own row, so its contacts and remaining tasks are counted the list's way.
    row = next(r for r in sequence_rows(catalog, book) if r.id == sequence_id)
    return sequence_detail(info, row)


def ordered_definition(definition: Mapping[str, Any]) -> dict[str, Any]:
    ordered = _ordered(definition, SEQUENCE_KEYS)
    if isinstance(ordered.get("schedule"), Mapping):
        ordered["schedule"] = _ordered(ordered["schedule"], SCHEDULE_KEYS)
    if isinstance(ordered.get("steps"), list):
        ordered["steps"] = [_ordered_step(step) for step in ordered["steps"]]
    if isinstance(ordered.get("triggers"), list):
        ordered["triggers"] = [
            _ordered(t, TRIGGER_KEYS, TRIGGER_LAST_KEYS) if isinstance(t, Mapping) else t
            for t in ordered["triggers"]
        ]
    return ordered


def _ordered_step(step: Any) -> Any:
    if not isinstance(step, Mapping):
        return step
    ordered = _ordered(step, STEP_KEYS)
    if isinstance(ordered.get("delay"), Mapping):
        ordered["delay"] = _ordered(ordered["delay"], DELAY_KEYS)
    return ordered


def _ordered(
    mapping: Mapping[str, Any], first: Sequence[str], last: Sequence[str] = ()
) -> dict[str, Any]:
    """`first` keys in that order, then the others by name, then `last`."""
    middle = sorted(key for key in mapping if key not in first and key not in last)
    return {key: mapping[key] for key in (*first, *middle, *last) if key in mapping}
