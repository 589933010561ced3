"""The plain text of `sequences show` (a sequence's facts, then its settings, steps and triggers)
and `sequences contacts` (a table of the contacts enrolled, with the total)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from ops.text_table import cell, local_time, table
from projections.contacts_view import ContactEnrollment
from projections.definition_words import (
    delay_words,
    trigger_action,
    trigger_values,
    value_text,
)
from projections.sequence_contacts import SequenceContact, SequenceContactsPage
from projections.sequence_detail import SEQUENCE_KEYS, SequenceDetail

INDENT = "  "
# Keys with a place of their own in the text rather than among the settings.
NOT_SETTINGS = frozenset({"id", "name", "description", "created", "steps", "triggers"})
# The settings in the order of a sequence file (CONTRACT.md §2); enroll_only_within_hours
# is the schedule's, shown on a line of its own after it, as the product's settings page does.
SETTINGS = tuple(
    shown
    for key in SEQUENCE_KEYS
    if key not in NOT_SETTINGS
    for shown in ((key, "enroll_only_within_hours") if key == "schedule" else (key,))
)
TRIGGER_HEADERS = ("TYPE", "VALUES", "ACTION")
CONTACT_HEADERS = ("CONTACT", "NAME", "PHONE", "EMAIL", "ENROLLED AT")
ENDED_HEADERS = ("STATE", "REASON", "ENDED AT")
PROGRESS_HEADERS = ("STEPS", "NEXT STEP", "DUE")


def sequence_text(detail: SequenceDetail, without_definition: str) -> str:
    """`without_definition` is what to say when the source holds no definition (where it
    came from, and why it may lack one)."""
    parts = [_facts(detail)]
    definition = detail.definition
    if definition is None:
        parts.append(without_definition + "\n")
    else:
        parts.append("Settings\n" + _settings(definition))
        parts.append("Steps\n" + _steps(definition.get("steps")))
        parts.append("Triggers\n" + _triggers(definition.get("triggers")))
    return "\n".join(parts)


def _facts(detail: SequenceDetail) -> str:
    row = detail.row
    facts: list[tuple[str, str]] = [
        ("description", cell(detail.description)),
        ("created", cell(row.created)),
        ("status", cell(row.status)),
    ]
    if row.problems:
        facts.append(("problems", "\n".join(row.problems)))
    facts.append(("contacts", f"{row.contacts} enrolled, {row.remaining_tasks} remaining tasks"))
    if detail.definition is None:
        # What the list knows, where the definition would say more.
        facts += [
            ("steps", str(row.steps)),
            ("process on", cell(row.process_on)),
            ("line", cell(row.line)),
        ]
    return f"{row.id}: {row.name}\n" + _aligned(facts)


def _settings(definition: Mapping[str, Any]) -> str:
    schedule = definition.get("schedule")
    # Without a schedule (open all day) the engine's default: false.
    within_hours = (
        schedule.get("enroll_only_within_hours") if isinstance(schedule, Mapping) else None
    )
    shown: dict[str, str] = {
        "schedule": _schedule(schedule),
        "enroll_only_within_hours": value_text(bool(within_hours)),
        "throttle_per_minute": (
            "unlimited"
            if definition.get("throttle_per_minute") is None
            else value_text(definition["throttle_per_minute"])
        ),
    }
    pairs = [
        (key, shown[key] if key in shown else value_text(definition.get(key))) for key in SETTINGS
    ]
    # A key this version does not name (a newer engine's) is still shown.
    pairs += [
        (key, value_text(value))
        for key, value in definition.items()
        if key not in NOT_SETTINGS and key not in SETTINGS
    ]
    return _aligned(pairs)


def _schedule(schedule: Any) -> str:
    """Open hours are the contact's local time (CONTRACT.md §3); the schedule's zone is the
    one used for a contact whose own is unknown."""
    if not isinstance(schedule, Mapping):
        return "open all day"
    opens, closes, zone = schedule.get("open"), schedule.get("close"), schedule.get("timezone")
    hours = (
        "open all day"
        if opens is None or closes is None
        else f"{opens}-{closes} the contact's time"
    )
    return hours if zone is None else f"{hours} ({zone} when the contact's zone is unknown)"


def _steps(steps: Any) -> str:
    if not isinstance(steps, list) or not steps:
        return f"{INDENT}(none)\n"
    lines: list[str] = []
    before: str | None = None
    for number, step in enumerate(steps, start=1):
        if not isinstance(step, Mapping):
            lines.append(f"{INDENT}{number}. {value_text(step)}")
            continue
        step_id = str(step.get("id"))
        lines.append(
            f"{INDENT}{number}. {step_id}  {cell(step.get('type'))}"
            f"  {delay_words(step.get('delay'), before)}"
        )
        for key, value in step.items():
            if key not in ("id", "type", "delay"):
                lines.append(_hanging(f"{INDENT * 3}{key}: ", value_text(value)))
        before = step_id
    return "\n".join(lines) + "\n"


def _triggers(triggers: Any) -> str:
    if not isinstance(triggers, list) or not triggers:
        return f"{INDENT}(none)\n"
    rows = [
        [cell(t.get("type")), cell(trigger_values(t)), trigger_action(t)]
        if isinstance(t, Mapping)
        else [value_text(t), "-", "-"]
        for t in triggers
    ]
    return _indented(table(TRIGGER_HEADERS, rows))


def contacts_text(page: SequenceContactsPage, *, ended: bool) -> str:
    """One row per enrollment; `ended` adds its state, the reason it ended and when."""
    zone = ZoneInfo(page.timezone)
    headers: Sequence[str] = (
        *CONTACT_HEADERS,
        *(ENDED_HEADERS if ended else ()),
        *PROGRESS_HEADERS,
    )
    rows = [_contact_cells(row, zone, ended=ended) for row in page.rows]
    return table(headers, rows) + f"Total: {page.total}\n"


def _contact_cells(row: SequenceContact, zone: ZoneInfo, *, ended: bool) -> list[str]:
    e = row.enrollment
    cells = [
        row.contact_id,
        cell(row.name),
        cell(row.phone),
        cell(row.email),
        local_time(e.enrolled_at, zone),
    ]
    if ended:
        cells += [
            e.state,
            cell(e.reason),
            "-" if e.ended_at is None else local_time(e.ended_at, zone),
        ]
    total = "?" if e.steps_total is None else str(e.steps_total)
    return [
        *cells,
        f"{e.steps_done}/{total}",
        cell(e.next_step_id),
        _due(e, zone),
    ]


def _due(enrollment: ContactEnrollment, zone: ZoneInfo) -> str:
    """The DUE column: `held` while an edit has made the sequence invalid, `-` for none."""
    if enrollment.held:
        return "held"
    due = enrollment.next_due_at
    return "-" if due is None else local_time(due, zone)


def _aligned(pairs: Sequence[tuple[str, str]]) -> str:
    """`  label  value` lines, the values in one column; a value's further lines under it."""
    width = max(len(label) for label, _ in pairs)
    return "".join(
        _hanging(f"{INDENT}{label.ljust(width)}  ", value) + "\n" for label, value in pairs
    )


def _hanging(lead: str, text: str) -> str:
    """`text` after `lead`, each further line indented to where the first began."""
    first, *rest = text.splitlines() or [""]
    return "\n".join(
        [(lead + first).rstrip(), *((" " * len(lead) + line).rstrip() for line in rest)]
    )


def _indented(text: str) -> str:
    return "".join(f"{INDENT}{line}\n" for line in text.splitlines())
