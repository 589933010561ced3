"""What validation and definitions share: the shipped JSON Schema files compiled once, a
fastjsonschema failure put into a field path and plain words, and the checks JSON Schema cannot
express (an IANA zone, a string without NUL).
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import fastjsonschema
import orjson
from fastjsonschema import JsonSchemaValueException

Validator = Callable[[Any], Any]

_ROOT = "data"  # the name fastjsonschema gives the validated value in its paths

_TYPE_WORDS = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "object": "an object",
    "array": "an array",
    "null": "null",
}


def schema_document(relative_path: str) -> dict[str, Any]:
    """A JSON Schema file shipped under schemas/json/ (`events/contact.created.v1.schema.json`)."""
    resource = resources.files("schemas").joinpath("json", *relative_path.split("/"))
    document: dict[str, Any] = orjson.loads(resource.read_bytes())
    return document


def schema_exists(relative_path: str) -> bool:
    return resources.files("schemas").joinpath("json", *relative_path.split("/")).is_file()


@functools.cache
def compiled(relative_path: str, *, formats: bool = True) -> Validator:
    """The validator of a shipped schema file, compiled on first use and kept.

    Defaults are not filled by the validator (`use_default=False`): validation never changes
    the value it checks; the definitions fill their defaults themselves, on a copy.
    `formats=False` leaves `format` to the caller, for a field it checks more cheaply itself.
    """
    validate: Validator = fastjsonschema.compile(
        schema_document(relative_path), use_default=False, use_formats=formats
    )
    return validate


def explain(error: JsonSchemaValueException) -> tuple[str, str]:
    """(dotted path below the validated value, reason) for a fastjsonschema failure.

    The path is "" for the value itself, else like `contact_id`, `tags[2]` or
    `steps[1].delay.at`. For a missing key the path names that key.
    """
    name = error.name or _ROOT
    path = name[len(_ROOT) :].removeprefix(".") if name.startswith(_ROOT) else name
    rule = error.rule
    definition = error.definition if isinstance(error.definition, Mapping) else {}
    wanted = error.rule_definition

    if rule == "required" and isinstance(error.value, Mapping):
        missing = next((key for key in wanted if key not in error.value), wanted[0])
        return _join(path, missing), "is required"
    if rule == "type":
        kinds: list[str] = wanted if isinstance(wanted, list) else [wanted]
        return path, "must be " + " or ".join(_TYPE_WORDS.get(kind, kind) for kind in kinds)
    custom = definition.get("errorMessage")
    if isinstance(custom, str):
        return path, custom
    return path, _reason(rule, wanted, error)


def _reason(rule: str | None, wanted: Any, error: JsonSchemaValueException) -> str:
    if rule == "enum":
        named = ", ".join(str(choice) for choice in wanted if choice is not None)
        # null in an enum stands for "left out": said apart, as JSON spells it.
        return f"must be one of {named}" + (" (or null)" if None in wanted else "")
    if rule == "const":
        return f"must be {orjson.dumps(wanted).decode()}"
    if rule == "minLength":
        return "must not be empty" if wanted == 1 else f"must be at least {wanted} characters"
    if rule == "maxLength":
        return f"must be at most {wanted} characters"
    if rule == "minItems":
        return "must not be empty" if wanted == 1 else f"must have at least {wanted} items"
    if rule == "maxItems":
        return f"must have at most {wanted} items"
    if rule == "minimum":
        return f"must be at least {wanted}"
    if rule == "maximum":
        return f"must be at most {wanted}"
    if rule == "exclusiveMinimum":
        return f"must be greater than {wanted}"
    if rule == "exclusiveMaximum":
        return f"must be less than {wanted}"
    if rule == "format" and wanted == "date-time":
        return "must be an RFC 3339 date-time such as 2027-07-02T20:30:00Z"
    if rule == "format":
        return f"must be a valid {wanted}"
    if rule == "pattern":
        return f"must match {wanted}"
    if rule in ("anyOf", "oneOf"):
        return "matches none of the allowed shapes"
    # Anything rarer: fastjsonschema's own words, without its `data...` subject.
    message = error.message
    subject = error.name or ""
    return message[len(subject) :].strip() if message.startswith(subject) else message


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# One address, as a provider's `to` takes it: no list, display name or header break.
_ONE_ADDRESS = re.compile(r'[^\s@,;<>"\x00-\x1f\x7f]+@[^\s@,;<>"\x00-\x1f\x7f]+')
ADDRESS_REASON = (
    "must be one e-mail address (name@domain, without spaces, commas, angle brackets or"
    " control characters)"
)


def is_one_address(text: str) -> bool:
    return _ONE_ADDRESS.fullmatch(text) is not None


_NOT_DATABASE_NAMES = frozenset({"localtime", "posixrules"})


@functools.lru_cache(maxsize=4096)
def is_iana_zone(name: str) -> bool:
    """True for a zone of the tz database, such as `America/New_York` or `UTC`.

    `localtime` is refused: it names whatever zone the machine is set to, so the same file
    would mean different things on different hosts. So are the copies some systems keep
    beside the database (`posixrules`, `posix/…`, and `right/…`, whose clocks count leap
    seconds and run 27 s apart from every other zone's): not the tz database's names.
    """
    if name in _NOT_DATABASE_NAMES or name.startswith(("posix/", "right/")):
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


# PostgreSQL's text and jsonb cannot hold U+0000, and a worker keeps every input's ids, its
# outputs and the definitions there: a string holding one is refused where it comes in, in a
# file as on a topic, or it would stop the worker's partition at its first write.
NUL_REASON = "must not contain the NUL character (\\u0000)"


def first_nul(value: object, path: str = "") -> str | None:
    """The path (`data.tags[1]`) of the first string or key in a parsed JSON value that holds
    U+0000, or None. A key's own NUL is written as `\\u0000` in the path."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            here = _join(path, str(key).replace("\x00", "\\u0000"))
            if isinstance(key, str) and "\x00" in key:
                return here
            found = first_nul(item, here)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = first_nul(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


# How deep a value may nest: no event needs more, and the JSON writer (orjson) refuses past
# 255 levels, which a parsed event could otherwise reach (its parser allows 1,024).
DEPTH_LIMIT = 64
DEPTH_REASON = f"nested more than {DEPTH_LIMIT} levels deep"


def too_deep(value: object, limit: int = DEPTH_LIMIT) -> bool:
    """Whether objects and arrays nest in `value` more than `limit` levels deep (a value
    that is an object or array is one level)."""
    level: list[Any] = [value] if isinstance(value, dict | list) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        level = [
            item
            for node in level
            for item in (node.values() if isinstance(node, dict) else node)
            if isinstance(item, dict | list)
        ]
    return False


# The JSON writer (orjson) writes integers of 64 bits at most.
INTEGER_RANGE = (-(2**63), 2**63 - 1)
SURROGATES = re.compile("[\ud800-\udfff]")  # what UTF-8 cannot write
SURROGATE_REASON = (
    "holds a surrogate code point (U+D800 to U+DFFF), which UTF-8 cannot write (YAML reads"
    " an escaped pair such as \\ud83d\\ude00 as two of them: write the character itself)"
)
NOT_FINITE_REASON = "must be a finite number, not NaN or infinity"
NOT_JSON_REASON = (
    "is no JSON value (YAML's !!binary, !!set, !!timestamp, !!omap or !!pairs): write it as"
    " a string, number, list or mapping"
)
_JSON_SCALARS = (str, int, float, bool, type(None))


def first_unwritable(value: object, path: str = "") -> tuple[str, str] | None:
    """The path of the first value in a parsed document that no JSON output can hold, and
    why: a lone surrogate in a string or key (a `\\ud800` escape), NaN or infinity, or a
    value of a type JSON lacks (YAML's `!!binary`, `!!set`, `!!timestamp`, `!!omap`)."""
    if isinstance(value, str):
        return (path, SURROGATE_REASON) if SURROGATES.search(value) else None
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, NOT_FINITE_REASON)
    if isinstance(value, dict):
        for key, item in value.items():
            # A surrogate in the path as written could not be printed nor dead-lettered.
            here = _join(path, str(key).encode("utf-8", "backslashreplace").decode("utf-8"))
            if isinstance(key, str) and SURROGATES.search(key):
                return here, SURROGATE_REASON
            found = first_unwritable(item, here)
            if found is not None:
                return found
        return None
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = first_unwritable(item, f"{path}[{index}]")
            if found is not None:
                return found
        return None
    if isinstance(value, _JSON_SCALARS):
        return None
    return path, NOT_JSON_REASON


OVERFLOW_REASON = "is too large a number: beyond a 64-bit float, it reads as infinity"
LONE_SURROGATE_REASON = (
    "holds a lone surrogate escape (\\ud800 to \\udfff without its pair), which is no"
    " character: write the character itself, or its escaped pair"
)


def unwritable_in_text(raw: bytes | str) -> tuple[str, str] | None:
    """Where a JSON text that orjson refused holds what JSON allows and no output can: a
    lone surrogate escape (`\\ud800`), or a number beyond a 64-bit float (`1e400`); the path
    and why. None when the text is not UTF-8 or not JSON at all (NaN and Infinity are not)."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        parsed = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return None
    found = first_unwritable(parsed)
    if found is None:
        return None
    path, reason = found
    # No NaN or Infinity literal came through, and JSON reads an escaped pair as one.
    return path, OVERFLOW_REASON if reason == NOT_FINITE_REASON else LONE_SURROGATE_REASON


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is no JSON value")


INTEGER_REASON = "is too large a number (at most 9,223,372,036,854,775,807)"


def first_huge_integer(value: object, path: str = "") -> str | None:
    """The path of the first integer in a parsed value that JSON output cannot hold."""
    if isinstance(value, int) and not isinstance(value, bool):
        low, high = INTEGER_RANGE
        return None if low <= value <= high else path
    items = (
        ((_join(path, str(key)), item) for key, item in value.items())
        if isinstance(value, dict)
        else ((f"{path}[{index}]", item) for index, item in enumerate(value))
        if isinstance(value, list)
        else ()
    )
    for where, item in items:
        found = first_huge_integer(item, where)
        if found is not None:
            return found
    return None


class _RepeatedKey(Exception):  # noqa: N818 - a signal out of the JSON reader, not an error
    def __init__(self, key: str) -> None:
        self.key = key


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members: dict[str, Any] = {}
    for key, value in pairs:
        if key in members:
            raise _RepeatedKey(key)
        members[key] = value
    return members


def _members(value: object) -> int:
    """How many members the objects in a parsed value hold, all levels (a loop: the value
    may nest as deep as the JSON reader allows)."""
    count = 0
    pending = [value]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            count += len(node)
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return count


# Whitespace a writer may put between a key and its colon other than one space: text with
# any of these is read again whatever the count says. One search, a third of the cost of
# looking for each of the four marks in turn; this runs for every input.
_SPACED_COLON = re.compile(rb'"(?:[\t\n\r]|  )')
_SPACED_COLON_TEXT = re.compile(_SPACED_COLON.pattern.decode())


def repeated_key(raw: bytes | str, parsed: object) -> str | None:
    """A key some object of the JSON text `raw` holds twice, or None. orjson keeps the
    last one without a word, and readers differ in which one they keep: the producer meant
    one of them, and nobody can tell which."""
    # Each member written leaves a `":` or `" :` in the text, so text with no more of them
    # than `parsed` keeps members has no repeat. Only text with more (a repeat, a string
    # holding the two characters, nested objects) or with other whitespace before a colon
    # is counted further, then read again.
    if isinstance(raw, bytes):
        marks = raw.count(b'":') + raw.count(b'" :')
        spaced = _SPACED_COLON.search(raw) is not None
    else:
        marks = raw.count('":') + raw.count('" :')
        spaced = _SPACED_COLON_TEXT.search(raw) is not None
    if spaced:
        return _read_for_repeats(raw)
    if not isinstance(parsed, dict):
        return None if marks == 0 else _read_for_repeats(raw)
    data = parsed.get("data")
    if marks <= len(parsed) + (len(data) if isinstance(data, dict) else 0):
        return None
    if marks <= _members(parsed):
        return None
    return _read_for_repeats(raw)


def _read_for_repeats(raw: bytes | str) -> str | None:
    try:
        json.loads(raw, object_pairs_hook=_unique_members)
    except _RepeatedKey as repeat:
        return repeat.key
    except (ValueError, RecursionError):
        return None  # read by orjson, which the caller trusts
    return None
