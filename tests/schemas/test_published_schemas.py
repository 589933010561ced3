"""A published schema version only changes in additive ways (schemas/README.md,
"Versions"): the shipped files against the lock of what was published, and the check
itself against each kind of change it has to tell apart."""

from __future__ import annotations

from typing import Any

import pytest

from tests.schemas.compatibility import breaking_changes, locked, problems, shipped

OLD: dict[str, Any] = {
    "$id": "urn:dripstream:schema:event:x:v1",
    "type": "object",
    "required": ["contact_id"],
    "properties": {
        "contact_id": {"type": "string", "minLength": 1},
        "reason": {"enum": ["a", "b"], "description": "why"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 10}},
        "at": {"type": "string", "format": "date-time"},
    },
    "additionalProperties": True,
}


def _with(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """OLD with the key at `path` set to `value` (deleted when `value` is ...)."""
    copy: dict[str, Any] = _copy(OLD)
    node = copy
    for key in path[:-1]:
        node = node[key]
    if value is ...:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return copy


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def test_the_shipped_files_keep_every_published_promise() -> None:
    assert problems(locked(), shipped()) == []


def test_every_shipped_file_is_in_the_lock() -> None:
    # A new schema file is published with the code that writes it: lock it too
    # (python -m tests.schemas.compatibility --update).
    assert sorted(set(shipped()) - set(locked())) == []


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("properties", "note"), {"type": "string"}),  # a new optional field
        (("properties", "reason", "enum"), ["a", "b", "c"]),  # a new enum value
        (("properties", "contact_id", "type"), ["string", "null"]),  # a wider type
        (("properties", "contact_id", "minLength"), 0),  # a looser bound
        (("properties", "tags", "items", "maxLength"), 20),
        (("properties", "at", "format"), ...),  # a rule dropped
        (("required",), []),  # no longer required
        (("properties", "reason", "description"), "why it happened"),  # prose
        (("title",), "x v1"),
    ],
)
def test_additive_changes_keep_the_version(path: tuple[str, ...], value: Any) -> None:
    assert list(breaking_changes(OLD, _with(path, value))) == []


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        (("properties", "reason"), ..., "/properties/reason: removed"),
        (("required",), ["contact_id", "reason"], "/required: newly required ['reason']"),
        (("properties", "reason", "enum"), ["a"], "/properties/reason/enum: lost the values"),
        (("properties", "contact_id", "type"), "integer", "/properties/contact_id/type"),
        (("properties", "contact_id", "minLength"), 2, "/properties/contact_id/minLength"),
        (("properties", "tags", "items", "maxLength"), 5, "/properties/tags/items/maxLength"),
        (("properties", "tags", "minItems"), 1, "/properties/tags/minItems: added"),
        (("properties", "at", "format"), "date", "/properties/at/format: changed"),
        (("additionalProperties",), False, "/additionalProperties: unknown fields"),
        (("additionalProperties",), {"type": "string"}, "/additionalProperties: unknown"),
        (("$id",), "urn:dripstream:schema:event:y:v1", "/$id: changed"),
    ],
)
def test_breaking_changes_are_named(path: tuple[str, ...], value: Any, named: str) -> None:
    found = list(breaking_changes(OLD, _with(path, value)))
    assert len(found) == 1, found
    assert found[0].startswith(named), found


def test_a_published_file_that_is_gone_is_named() -> None:
    lock = {"events/x.v1.schema.json": OLD}
    assert problems(lock, {}) == ["events/x.v1.schema.json: a published schema is gone"]
    assert problems(lock, {"events/x.v1.schema.json": OLD}) == []


def test_named_definitions_are_compared_part_by_part() -> None:
    # as sequences.schema.json keeps its parts under `definitions`
    old = {"definitions": {"account": OLD, "step": {"type": "object"}}}
    grown = {"definitions": {"account": _with(("properties", "note"), {"type": "string"}),
                             "step": {"type": "object"}, "delay": {"type": "object"}}}  # fmt: skip
    assert list(breaking_changes(old, grown)) == []
    assert list(breaking_changes(old, {"definitions": {"account": OLD}})) == [
        "/definitions/step: removed"
    ]
