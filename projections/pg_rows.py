"""How the read models' objects lie in PostgreSQL rows: the columns of each table, an object
to its row and a row back to its object."""

from __future__ import annotations

from typing import Any

import orjson
from psycopg import sql
from psycopg.rows import TupleRow

from projections.search_text import searchable
from projections.state import ContactCard, Enrollment, SequenceInfo

# What every read of a sequence needs; the writers keep its definition too.
SEQUENCE_SUMMARY_COLUMNS = (
    "sequence_id",
    "name",
    "description",
    "created",
    "steps_count",
    "process_on",
    "line",
    "status",
    "problems",
    "triggers",
    "intake_address",
    "account_timezone",
    "defined_order",
    "deleted",
    "step_ids",
)
SEQUENCE_COLUMNS = (*SEQUENCE_SUMMARY_COLUMNS, "definition")
ENROLLMENT_COLUMNS = (
    "enrollment_id",
    "sequence_id",
    "contact_id",
    "enrolled_at",
    "via",
    "steps_total",
    "state",
    "reason",
    "ended_at",
    "steps_done",
    "next_step_id",
    "next_due_at",
)
# Binary COPY types of ENROLLMENT_COLUMNS.
ENROLLMENT_TYPES = (
    "text",
    "text",
    "text",
    "timestamptz",
    "text",
    "int4",
    "text",
    "text",
    "timestamptz",
    "text[]",
    "text",
    "timestamptz",
)
CONTACT_COLUMNS = (
    "contact_id",
    "first_name",
    "last_name",
    "name",
    "phone",
    "email",
    "seen_at",
    "first_name_at",
    "last_name_at",
    "given_name",
    "given_name_at",
    "phone_at",
    "email_at",
)
# What a card's row holds beyond them: its fields folded for search (search_text), written
# with the row and never read back into a card.
CONTACT_WRITE_COLUMNS = (*CONTACT_COLUMNS, "folded")
# Their types, for COPY.
CONTACT_TYPES = ("text",) * 6 + ("timestamptz",) * 3 + ("text",) + ("timestamptz",) * 3 + ("text",)
HISTORY_COLUMNS = (
    "position",
    "event_source",
    "event_id",
    "sequence_key",
    "contact_key",
    "type_key",
    "action",
    "event",
    "time",
)
# Binary COPY types of HISTORY_COLUMNS.
HISTORY_COPY_TYPES = ("int8", "text", "text", "int4", "int4", "int2", "text", "text", "timestamptz")


Row = tuple[Any, ...]


def columns(names: tuple[str, ...]) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def sequence_from_row(row: TupleRow) -> SequenceInfo:
    return SequenceInfo(*row)


def enrollment_from_row(row: TupleRow) -> Enrollment:
    (eid, sid, cid, enrolled_at, via, total, state, reason, ended, done, next_id, due) = row
    return Enrollment(
        enrollment_id=eid,
        sequence_id=sid,
        contact_id=cid,
        enrolled_at=enrolled_at,
        via=via,
        steps_total=total,
        state=state,
        reason=reason,
        ended_at=ended,
        steps_done=set(done),
        next_step_id=next_id,
        next_due_at=due,
    )


def sequence_row(s: SequenceInfo) -> Row:
    return (
        s.sequence_id,
        s.name,
        s.description,
        s.created,
        s.steps_count,
        s.process_on,
        s.line,
        s.status,
        json_text(s.problems),
        json_text(s.triggers),
        s.intake_address,
        s.account_timezone,
        s.defined_order,
        s.deleted,
        None if s.step_ids is None else json_text(s.step_ids),
        None if s.definition is None else json_text(s.definition),
    )


def enrollment_row(e: Enrollment) -> Row:
    return (
        e.enrollment_id,
        e.sequence_id,
        e.contact_id,
        e.enrolled_at,
        e.via,
        e.steps_total,
        e.state,
        e.reason,
        e.ended_at,
        tuple(sorted(e.steps_done)),
        e.next_step_id,
        e.next_due_at,
    )


def json_text(value: Any) -> str:
    # Hashable for the comparison with the loaded row, and key order fixed: jsonb reorders keys.
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def card_row(c: ContactCard) -> Row:
    return (
        c.contact_id,
        c.first_name,
        c.last_name,
        c.name,
        c.phone,
        c.email,
        c.seen_at,
        c.first_name_at,
        c.last_name_at,
        c.given_name,
        c.given_name_at,
        c.phone_at,
        c.email_at,
        searchable(c.name, c.phone, c.email),
    )
