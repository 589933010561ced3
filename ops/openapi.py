"""The HTTP API's OpenAPI 3.0 document (`GET /openapi.json`): every route, its parameters,
bodies and answers; the tests validate every answer the API gives against it."""

from __future__ import annotations

from typing import Any

from ops.api_rules import DEFAULT_LIMIT, ENROLL_KEYS, MAX_COUNT, MAX_LIMIT
from projections.history import TIMEFRAMES


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _content(name: str) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(name)}}


def _reply(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": _content(schema)}


def _errors_for(*codes: int) -> dict[str, Any]:
    what = {
        400: "invalid JSON, a bad or unknown query parameter, or an Idempotency-Key that is"
        " not 1 to 200 characters (field names it)",
        401: "no token, or an unknown one, where the API has tokens set (field Authorization)",
        403: "a command with the read token, or a command where only a read token is set"
        " (no admin token: commands are then refused to everyone)",
        404: "unknown sequence or contact",
        405: "read-only: this API serves a file (`--history`), commands are not taken",
        409: "the id is taken",
        413: "the body is over 1 MiB, or the command made of it over 128 KiB (field body)",
        415: "a body without Content-Type application/json (or another +json type)",
        422: "the command was refused (field names the key, e.g. steps[1].text, or"
        " Idempotency-Key when the key came with another request)",
        503: "live mode: the read models' PostgreSQL cannot be reached, or holds no read"
        " models yet (run `dripstream projections run`); for a command, Kafka did not take"
        " it within 15 s (it may still go through: retry with the same Idempotency-Key)",
    }
    # Every route but the document's reads the read models, commands too (to check ids).
    return {str(code): _reply(what[code], "Error") for code in (*codes, 503)}


def _nullable(kind: str, **more: Any) -> dict[str, Any]:
    return {"type": kind, "nullable": True, **more}


def _page(row: str, total: str) -> dict[str, Any]:
    """A page of one sequence's `row`s, with the count `total` describes."""
    return {
        "type": "object",
        "required": ["sequence_id", "total", "rows"],
        "properties": {
            "sequence_id": {"type": "string"},
            "total": {"type": "integer", "description": total},
            "rows": {"type": "array", "items": _ref(row)},
        },
        "additionalProperties": False,
    }


def _history_page() -> dict[str, Any]:
    """A History page, with the window its timeframe chose."""
    page = _page("HistoryRow", "rows after the filters")
    when = "RFC 3339, UTC"
    page["required"] = [*page["required"], "timezone", "timeframe", "now", "from", "to"]
    page["properties"] |= {
        "timezone": {"type": "string", "description": "the zone the timeframe's days are in"},
        "timeframe": {"type": "string", "enum": list(TIMEFRAMES)},
        "now": _nullable(
            "string",
            description=f"the moment the timeframe counts from ({when}): `now`, else"
            " the latest decision",
        ),
        "from": _nullable("string", description=f"the window's start ({when}); null: all time"),
        "to": _nullable("string", description=f"the window's end, excluded ({when})"),
    }
    return page


_SEQUENCE_ID = {
    "name": "sequence_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
}

# The Sequences page's columns: a row of the list, and the head of one sequence's detail.
_ROW_PROPERTIES: dict[str, Any] = {
    "id": {"type": "string"},
    "name": {"type": "string"},
    "created": _nullable("string"),
    "steps": {"type": "integer"},
    "process_on": _nullable("string"),
    "line": _nullable("string"),
    "contacts": {"type": "integer", "description": "active enrollments"},
    "remaining_tasks": {"type": "integer"},
    "status": {"type": "string"},
    "problems": {
        "type": "array",
        "items": {"type": "string"},
        "description": "why the sequence is invalid; empty when active",
    },
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "field"],
        "properties": {
            "error": {"type": "string"},
            "field": _nullable("string", description="the body key or parameter at fault"),
            "sequence_id": _nullable("string"),
        },
    },
    "Accepted": {
        "type": "object",
        "required": ["command_id", "sequence_id"],
        "properties": {
            "command_id": {"type": "string", "description": "the published CloudEvent's id"},
            "sequence_id": {"type": "string"},
            "warnings": {
                "type": "array",
                "items": {"type": "string"},
                "description": "a create or update: keys nothing reads (`sequence x: colour:"
                " unknown key, ignored`) and, for a sequence that loads `invalid`, its problems;"
                " as `sequences apply` says on stderr",
            },
        },
        "additionalProperties": False,
    },
    "SequenceDefinition": {
        "type": "object",
        "description": "One sequence as in a sequence file (schemas/json/sequences.schema.json"
        ", definitions.sequence), plus an optional `account` (else the server's default; with"
        " neither, the account in force stays).",
        "required": ["id", "name"],
        "properties": {
            "id": {"type": "string", "minLength": 1},
            "name": {"type": "string", "minLength": 1},
            "account": {"type": "object", "additionalProperties": True},
            "steps": {"type": "array", "items": {"type": "object"}},
            "triggers": {"type": "array", "items": {"type": "object"}},
        },
        "additionalProperties": True,
    },
    "CopyRequest": {
        "type": "object",
        "required": ["new_id"],
        "properties": {
            "new_id": {"type": "string", "minLength": 1},
            "new_name": {"type": "string", "minLength": 1},
        },
        "additionalProperties": False,
        "description": "Any other key is refused (422).",
    },
    "EnrollmentRequest": {
        "type": "object",
        "description": "At least one of contact_ids, tag, line_id, contact_group; any other"
        " key is refused (422), sequence_id aside when it is the path's.",
        "properties": {
            "sequence_id": {"type": "string", "description": "the path's, if given"},
            "contact_ids": {"type": "array", "minItems": 1, "items": {"type": "string"}},
            "tag": {"type": "string", "minLength": 1},
            "line_id": {"type": "string", "minLength": 1},
            "contact_group": {
                "type": "array",
                "minItems": 1,
                "items": {"oneOf": [{"type": "string"}, {"type": "object"}]},
            },
        },
        "anyOf": [{"required": [key]} for key in ENROLL_KEYS],
        "additionalProperties": False,
    },
    "SequenceRow": {
        "type": "object",
        "required": list(_ROW_PROPERTIES),
        "properties": _ROW_PROPERTIES,
        "additionalProperties": False,
    },
    "SequenceList": {"type": "array", "items": _ref("SequenceRow")},
    "SequenceDetail": {
        "type": "object",
        "description": "One sequence: the list's columns, its description and the definition"
        " in force.",
        "required": [*_ROW_PROPERTIES, "description", "definition"],
        "properties": {
            **_ROW_PROPERTIES,
            "description": _nullable("string"),
            "definition": _nullable(
                "object",
                description="The definition in force as the engine published it with"
                " sequence.defined: a sequence file's sequence with every default filled in"
                " (settings, `schedule`, `steps` with their `delay` and settings, `triggers`);"
                " keys in the sequence file's order. A trigger without `action` enrolls, but"
                " `call_duration`, which disenrolls. null when the stream was written by an"
                " engine that did not publish it.",
                required=["id", "name", "steps", "triggers"],
                properties={
                    "id": {"type": "string"},
                    "name": {"type": "string"},
                    "steps": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["id", "type"],
                            "properties": {
                                "id": {"type": "string"},
                                "type": {"type": "string"},
                                "delay": {"type": "object"},
                            },
                            "additionalProperties": True,
                        },
                    },
                    "triggers": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["type"],
                            "properties": {
                                "type": {"type": "string"},
                                "action": {"type": "string", "enum": ["enroll", "disenroll"]},
                            },
                            "additionalProperties": True,
                        },
                    },
                },
                additionalProperties=True,
            ),
        },
        "additionalProperties": False,
    },
    "SequenceContact": {
        "type": "object",
        "description": "One enrollment in the sequence and its contact as known now.",
        "required": [
            "contact_id",
            "name",
            "phone",
            "email",
            "enrollment_id",
            "state",
            "reason",
            "enrolled_at",
            "ended_at",
            "steps_done",
            "steps_total",
            "next_step_id",
            "next_due_at",
            "held",
        ],
        "properties": {
            "contact_id": {"type": "string"},
            "name": _nullable("string"),
            "phone": _nullable("string"),
            "email": _nullable("string"),
            "enrollment_id": {"type": "string"},
            "state": {"type": "string", "enum": ["active", "completed", "disenrolled"]},
            "reason": _nullable("string", description="why it was disenrolled"),
            "enrolled_at": {"type": "string", "format": "date-time"},
            "ended_at": _nullable("string", format="date-time"),
            "steps_done": {
                "type": "integer",
                "description": "steps of the definition in force executed or skipped",
            },
            "steps_total": _nullable("integer", description="steps of the definition in force"),
            "next_step_id": _nullable("string"),
            "next_due_at": _nullable("string", format="date-time"),
            "held": {
                "type": "boolean",
                "description": "active in a sequence an edit made invalid: held, no next step"
                " or due moment until an edit puts it right",
            },
        },
        "additionalProperties": False,
    },
    "SequenceContactsPage": _page("SequenceContact", "rows before limit and offset"),
    "HistoryRow": {
        "type": "object",
        "required": [
            "contact",
            "contact_id",
            "contact_name",
            "contact_phone",
            "action",
            "event",
            "type",
            "time",
        ],
        "properties": {
            "contact": _nullable(
                "string",
                description="the report's contact column: `Name (id) +phone`, as known;"
                " null for a row of no contact",
            ),
            "contact_id": _nullable("string"),
            "contact_name": _nullable("string"),
            "contact_phone": _nullable("string"),
            "action": {"type": "string"},
            "event": {"type": "string"},
            "type": {"type": "string"},
            "time": {"type": "string", "format": "date-time"},
        },
        "additionalProperties": False,
    },
    "HistoryPage": _history_page(),
    "ContactEnrollment": {
        "type": "object",
        "required": [
            "sequence_id",
            "sequence_name",
            "enrollment_id",
            "state",
            "reason",
            "enrolled_at",
            "ended_at",
            "steps_done",
            "steps_total",
            "next_step_id",
            "next_due_at",
            "held",
        ],
        "properties": {
            "sequence_id": {"type": "string"},
            "sequence_name": _nullable("string"),
            "enrollment_id": {"type": "string"},
            "state": {"type": "string"},
            "reason": _nullable("string"),
            "enrolled_at": {"type": "string", "format": "date-time"},
            "ended_at": _nullable("string", format="date-time"),
            "steps_done": {"type": "integer"},
            "steps_total": _nullable("integer"),
            "next_step_id": _nullable("string"),
            "next_due_at": _nullable("string", format="date-time"),
            "held": {
                "type": "boolean",
                "description": "active in a sequence an edit made invalid: held, no next step"
                " or due moment until an edit puts it right",
            },
        },
        "additionalProperties": False,
    },
    "Contact": {
        "type": "object",
        "required": ["contact_id", "name", "phone", "email", "enrollments"],
        "properties": {
            "contact_id": {"type": "string"},
            "name": _nullable("string"),
            "phone": _nullable("string"),
            "email": _nullable("string"),
            "enrollments": {"type": "array", "items": _ref("ContactEnrollment")},
        },
        "additionalProperties": False,
    },
}


def _query(name: str, description: str, **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


# A page of rows: the contacts of a sequence, its history.
_PAGING = (
    _query(
        "limit",
        f"rows to return (default {DEFAULT_LIMIT}, at most {MAX_LIMIT}; `total` counts them all)",
        type="integer",
        minimum=0,
        maximum=MAX_LIMIT,
    ),
    _query("offset", "rows to skip", type="integer", minimum=0, maximum=MAX_COUNT, default=0),
)


def openapi_document() -> dict[str, Any]:
    definition_body = {"required": True, "content": _content("SequenceDefinition")}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "dripstream API",
            "version": "1",
            "description": "Sequence commands (published to the commands topic as CloudEvents"
            ", decided asynchronously by the engine: an answer means published, and the read"
            " models show the outcome once the worker and the projector have caught up) and"
            " the read models. A command request may carry an `Idempotency-Key` header: a"
            " retry with the same key and the same request (method, path, body) within a day"
            " gets the first answer again and publishes nothing (this API process remembers"
            " it; across processes the key and the request's fingerprint make the command's"
            " id, which the engine decides once within a day), so a retry enrolls or sends"
            " nothing twice; the same key with another request is refused (422, field"
            " `Idempotency-Key`). `account` in a definition is the"
            " account of every sequence, as in a file given to `sequences apply`. Editing a"
            " sequence's steps: active enrollments go on by step id (the first step not"
            " passed yet, so each step runs once); one whose next step is not the one it"
            " was waiting for is scheduled again from the step passed last. An edit that"
            " makes a sequence invalid holds its enrollments until one puts it right. Over"
            " a file (`--history`) the API only reads: commands answer 405.",
        },
        "paths": {
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "security": [],  # open whatever tokens are set
                    "responses": {
                        "200": {"description": "OpenAPI 3.0 document"},
                        "400": _reply("a query parameter (it takes none)", "Error"),
                    },
                }
            },
            "/sequences": {
                "get": {
                    "summary": "The Sequences page (as `sequences list --json`)",
                    "responses": {
                        "200": _reply("one row per sequence", "SequenceList"),
                        **_errors_for(400, 401),
                    },
                },
                "post": {
                    "summary": "Define a new sequence (publishes sequence.applied)",
                    "requestBody": definition_body,
                    "responses": {
                        "201": _reply("published", "Accepted"),
                        **_errors_for(400, 401, 403, 405, 409, 413, 415, 422),
                    },
                },
            },
            "/sequences/{sequence_id}": {
                "parameters": [_SEQUENCE_ID],
                "get": {
                    "summary": "A sequence's settings, steps and triggers (as `sequences show"
                    " --json`); a deleted sequence is unknown, as in the list",
                    "responses": {
                        "200": _reply("the sequence", "SequenceDetail"),
                        **_errors_for(400, 401, 404),
                    },
                },
                "put": {
                    "summary": "Replace a sequence's definition, or define it under this id"
                    " (publishes sequence.applied)",
                    "requestBody": definition_body,
                    "responses": {
                        "200": _reply("published", "Accepted"),
                        **_errors_for(400, 401, 403, 405, 413, 415, 422),
                    },
                },
                "delete": {
                    "summary": "Delete a sequence (publishes sequence.delete_requested)",
                    "responses": {
                        "202": _reply("published", "Accepted"),
                        **_errors_for(400, 401, 403, 404, 405, 415, 422),
                    },
                },
            },
            "/sequences/{sequence_id}/copy": {
                "parameters": [_SEQUENCE_ID],
                "post": {
                    "summary": "Copy a sequence (publishes sequence.copy_requested)",
                    "requestBody": {"required": True, "content": _content("CopyRequest")},
                    "responses": {
                        "201": _reply("published; sequence_id is the new id", "Accepted"),
                        **_errors_for(400, 401, 403, 404, 405, 409, 413, 415, 422),
                    },
                },
            },
            "/sequences/{sequence_id}/enrollments": {
                "parameters": [_SEQUENCE_ID],
                "post": {
                    "summary": "Enroll contacts (publishes enrollment.requested)",
                    "requestBody": {"required": True, "content": _content("EnrollmentRequest")},
                    "responses": {
                        "202": _reply("published", "Accepted"),
                        **_errors_for(400, 401, 403, 404, 405, 413, 415, 422),
                    },
                },
            },
            "/sequences/{sequence_id}/removals": {
                "parameters": [_SEQUENCE_ID],
                "post": {
                    "summary": "Take contacts out of the sequence by hand (publishes"
                    " enrollment.removal_requested; each one enrolled is disenrolled, reason"
                    " manual)",
                    "requestBody": {"required": True, "content": _content("EnrollmentRequest")},
                    "responses": {
                        "202": _reply("published", "Accepted"),
                        **_errors_for(400, 401, 403, 404, 405, 413, 415, 422),
                    },
                },
            },
            "/sequences/{sequence_id}/contacts": {
                "parameters": [_SEQUENCE_ID],
                "get": {
                    "summary": "The contacts enrolled (as `sequences contacts --json`): active"
                    " enrollments by enrolled_at, then contact id",
                    "parameters": [
                        _query(
                            "all",
                            "true: the enrollments that completed or were disenrolled too",
                            type="boolean",
                            default=False,
                        ),
                        *_PAGING,
                    ],
                    "responses": {
                        "200": _reply("the page and the total", "SequenceContactsPage"),
                        **_errors_for(400, 401, 404),
                    },
                },
            },
            "/sequences/{sequence_id}/history": {
                "parameters": [_SEQUENCE_ID],
                "get": {
                    "summary": "The History report (as `history --json`), newest first",
                    "parameters": [
                        _query("search", "contact name, id, e-mail or phone"),
                        _query(
                            "type",
                            "enrollment, disenrollment, property_update, communication, "
                            "creation, step; trigger (enrollment and disenrollment) or "
                            "action (step, property_update, communication, creation); "
                            "or an exact event type",
                        ),
                        _query(
                            "timeframe",
                            "whole local days of the account's zone",
                            type="string",
                            enum=list(TIMEFRAMES),
                            default="all_time",
                        ),
                        _query(
                            "now",
                            "RFC 3339; default the time of the latest decision about a contact",
                            type="string",
                            format="date-time",
                        ),
                        _query("timezone", "IANA zone for the timeframes"),
                        *_PAGING,
                    ],
                    "responses": {
                        "200": _reply("the page and the total", "HistoryPage"),
                        **_errors_for(400, 401, 404),
                    },
                },
            },
            "/contacts/{contact_id}": {
                "parameters": [
                    {
                        "name": "contact_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "get": {
                    "summary": "A contact and its enrollments",
                    "responses": {
                        "200": _reply("the contact", "Contact"),
                        **_errors_for(400, 401, 404),
                    },
                },
            },
        },
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "DRIPSTREAM_API_ADMIN_TOKEN for commands (and reads);"
                    " DRIPSTREAM_API_READ_TOKEN for reads. A token not set is not asked for.",
                }
            },
        },
        "security": [{"bearer": []}, {}],
    }
