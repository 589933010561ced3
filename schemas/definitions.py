"""The sequence-definition file (CONTRACT.md §2): parsed from YAML or JSON, checked against
json/sequences.schema.json and a few rules JSON Schema cannot state, returned with defaults.

A file with any error is refused whole. What only makes a sequence unable to run (an SMS step
with no outbound line, an unknown ring group or shortcode) is not checked here: the engine
loads such a sequence with status `invalid`.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import yaml
from fastjsonschema import JsonSchemaValueException

from schemas import checking
from schemas.envelope import RFC3339_REASON, RFC3339_SHAPE, TimeOutOfRange, parse_event_time

_SEQUENCE_PATH = re.compile(r"sequences\[(\d+)\](?:\.(.+))?")

# The account may be left out, and so may its keys: the contract requires none of them.
DEFAULT_TIMEZONE = "UTC"
DEFAULT_OPT_OUT_PHRASE = "Reply STOP to opt out."
ACCOUNT_DEFAULTS: dict[str, Any] = {
    "timezone": DEFAULT_TIMEZONE,
    "opt_out_phrase": DEFAULT_OPT_OUT_PHRASE,
    "lines": {},
    "users": {},
    "ring_groups": {},
}
SEQUENCE_DEFAULTS: dict[str, Any] = {
    "process_on": "business_days",
    "run_on_holidays": False,
    "prevent_enrollment_if_communicated": False,
    "throttle_per_minute": None,
    "remove_on_response": True,
    "remove_on_manual_call": True,
    "remove_on_opt_out": True,
    "steps": [],
    "triggers": [],
}
SCHEDULE_DEFAULTS: dict[str, Any] = {"enroll_only_within_hours": False}
STEP_DEFAULTS: dict[str, Any] = {"delay": {"kind": "none"}}
TIME_OF_DAY_DEFAULTS: dict[str, Any] = {"days": 0}
# `intake_address: auto`: the engine sets the sequence's own address (aggregates/intake.py).
AUTO_INTAKE = "auto"
TRIGGER_DEFAULTS: dict[str, Any] = {"action": "enroll"}
# A call_duration trigger removes the contact (CONTRACT.md §2): its action says so, so that
# a reader of the definition need not know the rule.
CALL_DURATION_TRIGGER_DEFAULTS: dict[str, Any] = {"action": "disenroll"}


class DefinitionRejected(ValueError):  # noqa: N818 - the name is fixed by DEVELOPERS.md
    """A definition document that is refused whole.

    `sequence_id` is None for the file or the account; `key` is dotted below the sequence
    (`steps[1].text`) or the document (`account.quiet_hours.start`, or `file` for the file
    itself); `location` is the dotted path from the document's root (`sequences[0].steps[1].text`,
    "" for the document itself).
    """

    def __init__(
        self, sequence_id: str | None, key: str, reason: str, location: str | None = None
    ) -> None:
        where = f"{key}: {reason}"
        super().__init__(where if sequence_id is None else f"sequence {sequence_id!r}: {where}")
        self.sequence_id = sequence_id
        self.key = key
        self.reason = reason
        self.location = ("" if key == "file" else key) if location is None else location

    def __reduce__(self) -> tuple[type[DefinitionRejected], tuple[str | None, str, str, str]]:
        return (type(self), (self.sequence_id, self.key, self.reason, self.location))


def load_definition_file(path: str | Path) -> dict[str, Any]:
    """Read, parse and check a definition file: JSON when it is named `.json`, else JSON or
    YAML told apart by content."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise DefinitionRejected(None, "file", f"cannot be read: {exc.strerror or exc}") from None
    return load_definition_text(raw, json_only=Path(path).suffix.lower() == ".json")


def load_definition_text(raw: bytes | str, *, json_only: bool = False) -> dict[str, Any]:
    """Parse and check a definition document given as text (JSON or YAML; `json_only`:
    JSON, so its mistakes are told in JSON's words, not read again as YAML)."""
    return validate_definition_document(_parse(raw, json_only=json_only))


def validate_definition_document(doc: object) -> dict[str, Any]:
    """Check a parsed document; return a copy with every default filled in (`doc` is untouched)."""
    _check_size(doc)  # first: the walks below would recurse too deep, or expand an alias bomb
    _check_keys_are_strings(doc, doc, "")
    nul = checking.first_nul(doc)
    if nul is not None:
        raise _rejection(doc, nul, checking.NUL_REASON)
    unwritable = checking.first_unwritable(doc)
    if unwritable is not None:
        # Else it loads, and the engine's first output holding it cannot be written.
        raise _rejection(doc, *unwritable)
    huge = checking.first_huge_integer(doc)
    if huge is not None:
        # Else it loads, and the engine's first output naming it cannot be written.
        raise _rejection(doc, huge, checking.INTEGER_REASON)
    try:
        checking.compiled("sequences.schema.json")(doc)
    except JsonSchemaValueException as exc:
        location, reason = checking.explain(exc)
        raise _rejection(doc, location, reason) from None
    assert isinstance(doc, dict)  # the schema's root type
    _check_rules(doc)
    return _with_defaults(doc)


# --- parsing


class _DefinitionLoader(yaml.SafeLoader):
    """YAML with the core-schema scalars of YAML 1.2 instead of PyYAML's 1.1 ones.

    Under 1.1 `on:` (a dnc_changed trigger's key) is the boolean true, `at: 10:00` is the
    integer 600 and `created: 2027-07-01` a date; here they stay the strings they look like.
    Only true/false are booleans and only decimal numbers are numbers. A repeated key is an
    error rather than a silent overwrite.
    """

    # Its own table (filled below) instead of the one inherited from SafeLoader.
    yaml_implicit_resolvers = {}  # noqa: RUF012 - PyYAML keeps this table per loader class

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # An explicit tag on a value that is not of its kind (`!!int x`, `!!bool maybe`,
        # `!!timestamp bad`) fails inside PyYAML's constructors with Python's own errors:
        # said as YAML's, at the value.
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, TypeError, KeyError, AttributeError, IndexError, AssertionError):
            raise _not_of_its_tag(node) from None

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, yaml.MappingNode):
            raise _not_of_its_tag(node)  # `!!map x`, `!!set [a]`
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE_TAG:
                marker = (key_node.tag, key_node.value)
                if marker in seen:
                    raise yaml.constructor.ConstructorError(
                        "while reading a mapping",
                        node.start_mark,
                        f"found the key {key_node.value!r} twice",
                        key_node.start_mark,
                    )
                seen.add(marker)
        return super().construct_mapping(node, deep=deep)


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _not_of_its_tag(node: yaml.Node) -> yaml.constructor.ConstructorError:
    tag = node.tag.replace("tag:yaml.org,2002:", "!!")
    return yaml.constructor.ConstructorError(
        None, None, f"a value tagged {tag} that is no {tag.lstrip('!')}", node.start_mark
    )


def _construct_decimal_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    assert isinstance(node, yaml.ScalarNode)
    text = str(loader.construct_scalar(node))
    if len(text) > _LONGEST_NUMBER:
        raise yaml.constructor.ConstructorError(
            None, None, f"a number of {len(text)} digits is too long", node.start_mark
        )
    return int(text)


_LONGEST_NUMBER = 100  # digits: far beyond any setting, far below Python's 4,300-digit guard
# Values a document may hold once its YAML aliases are expanded: a file of a hundred
# sequences holds a few thousand, one of a thousand sequences of fifty steps about 420,000.
# Beyond it lies an alias bomb ("billion laughs"), which every later walk of the document
# would expand again.
_MOST_VALUES = 1_000_000
_DEEPEST = checking.DEPTH_LIMIT  # nesting levels; a definition needs about eight


for _tag, _pattern, _first in [
    ("tag:yaml.org,2002:null", r"~|null|Null|NULL|", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:bool", r"true|True|TRUE|false|False|FALSE", list("tTfF")),
    ("tag:yaml.org,2002:int", r"[-+]?[0-9]+", list("-+0123456789")),
    (
        "tag:yaml.org,2002:float",
        r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)",
        list("-+0123456789."),
    ),
    (_MERGE_TAG, r"<<", ["<"]),
]:
    _DefinitionLoader.add_implicit_resolver(_tag, re.compile(f"^(?:{_pattern})$"), _first)
_DefinitionLoader.add_constructor("tag:yaml.org,2002:int", _construct_decimal_int)


def _parse(raw: bytes | str, *, json_only: bool) -> object:
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DefinitionRejected(None, "file", f"not valid UTF-8: {exc.reason}") from None
    try:
        return _parse_text(raw, json_only=json_only)
    except RecursionError:
        raise DefinitionRejected(None, "file", "nested too deeply") from None


def _parse_text(raw: str, *, json_only: bool) -> object:
    if json_only or raw.lstrip().startswith(("{", "[")):
        try:
            return json.loads(raw, object_pairs_hook=_mapping_without_repeats)
        except json.JSONDecodeError as exc:
            if json_only:
                where = f"line {exc.lineno}, column {exc.colno}"
                raise DefinitionRejected(
                    None, "file", f"not valid JSON: {exc.msg} ({where})"
                ) from None
            # a YAML flow mapping starts with "{" too
        except DefinitionRejected:
            raise  # a key named twice
        except ValueError:  # an integer of more digits than Python converts
            raise DefinitionRejected(
                None, "file", "not valid JSON: a number of more than 4,300 digits"
            ) from None
    try:
        return yaml.load(raw, Loader=_DefinitionLoader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise DefinitionRejected(None, "file", f"not valid YAML: {_yaml_problem(exc)}") from None


def _mapping_without_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refused when it names a key twice (as YAML is): the last value would
    win without a word, e.g. a delay's second `amount`."""
    mapping: dict[str, Any] = {}
    for key, value in pairs:
        if key in mapping:
            raise DefinitionRejected(None, "file", f"not valid JSON: found the key {key!r} twice")
        mapping[key] = value
    return mapping


def _check_size(doc: object) -> None:
    """Refuse a document too big or too deep once its aliases are expanded. Counted with a
    memo per shared value, so an alias bomb is measured without being expanded."""
    sizes: dict[int, int] = {}
    # (value, depth, children counted, where): a post-order walk without recursion; `where`
    # is a linked (parent's where, step) pair, spelt out only for a refusal.
    stack: list[tuple[object, int, bool, _Where]] = [(doc, 1, False, None)]
    while stack:
        value, depth, counted, where = stack.pop()
        if depth > _DEEPEST:
            raise _rejection(doc, _spelt(where), f"nested more than {_DEEPEST} levels deep")
        children = _children(value)
        if counted:
            total = 1 + sum(sizes[id(child)] for _, child in children)
            if total > _MOST_VALUES:
                raise DefinitionRejected(
                    None,
                    "file",
                    f"holds more than {_MOST_VALUES:,} values (each YAML alias counted as"
                    " the values it stands for)",
                )
            sizes[id(value)] = total
        elif id(value) not in sizes:
            stack.append((value, depth, True, where))
            stack.extend((child, depth + 1, False, (where, step)) for step, child in children)


_Where = tuple["_Where", str] | None
_SPELT_STEPS = 8  # of a too-deep value's place: enough to find it, not sixty `[0]`s


def _spelt(where: _Where) -> str:
    steps: list[str] = []
    while where is not None:
        where, step = where
        steps.append(step)
    steps.reverse()
    text = "".join(steps[:_SPELT_STEPS]).lstrip(".")
    return text + ("…" if len(steps) > _SPELT_STEPS else "")


def _children(value: object) -> list[tuple[str, object]]:
    if isinstance(value, dict):
        return [(f".{key}", item) for key, item in value.items()]
    if isinstance(value, list):
        return [(f"[{index}]", item) for index, item in enumerate(value)]
    return []


def _yaml_problem(error: yaml.YAMLError) -> str:
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        return f"{error.problem} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(error).split())


# --- checks


def _rejection(doc: object, location: str, reason: str) -> DefinitionRejected:
    """Name the sequence when the fault lies inside one that has a usable id."""
    match = _SEQUENCE_PATH.fullmatch(location)
    if match is not None and match[2] is not None and isinstance(doc, dict):
        sequences = doc.get("sequences")
        index = int(match[1])
        if isinstance(sequences, list) and index < len(sequences):
            sequence = sequences[index]
            sequence_id = sequence.get("id") if isinstance(sequence, dict) else None
            if isinstance(sequence_id, str) and sequence_id:
                return DefinitionRejected(sequence_id, match[2], reason, location)
    return DefinitionRejected(None, location or "file", reason, location)


def _check_keys_are_strings(doc: object, value: object, location: str) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            # As the file wrote it: `null:`, `true:` (Python would say None, True).
            written = json.dumps(key) if key is None or isinstance(key, bool) else str(key)
            here = f"{location}.{written}" if location else written
            if not isinstance(key, str):
                raise _rejection(doc, here, "keys must be strings")
            _check_keys_are_strings(doc, item, here)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_keys_are_strings(doc, item, f"{location}[{index}]")


def _check_rules(doc: dict[str, Any]) -> None:
    account = doc.get("account", {})
    if "timezone" in account:
        _check_zone(doc, "account.timezone", account["timezone"])
    for user_id, user in (account.get("users") or {}).items():
        email = user.get("email")
        if email is not None and not checking.is_one_address(email):
            raise _rejection(doc, f"account.users.{user_id}.email", checking.ADDRESS_REASON)
    phrase = account.get("opt_out_phrase")
    if isinstance(phrase, str) and not phrase.strip():
        # Every automated text ends with it (CONTRACT.md §2): blanks would end them with
        # no way out said at all.
        raise _rejection(doc, "account.opt_out_phrase", "must not be blank")
    quiet = account.get("quiet_hours")
    if quiet is not None and quiet["start"] >= quiet["end"]:
        raise _rejection(doc, "account.quiet_hours.end", f"must be after start ({quiet['start']})")

    first_with_id: dict[str, int] = {}
    first_with_address: dict[str, str] = {}
    for index, sequence in enumerate(doc["sequences"]):
        here = f"sequences[{index}]"
        _check_id(doc, f"{here}.id", sequence["id"])
        for number, step in enumerate(sequence.get("steps", [])):
            _check_id(doc, f"{here}.steps[{number}].id", step["id"])
        earlier = first_with_id.setdefault(sequence["id"], index)
        if earlier != index:
            raise _rejection(doc, f"{here}.id", f"is already the id of sequences[{earlier}]")
        if "created" in sequence:
            _check_created(doc, f"{here}.created", sequence["created"])
        schedule = sequence.get("schedule") or {}
        if "timezone" in schedule:
            _check_zone(doc, f"{here}.schedule.timezone", schedule["timezone"])
        given = [edge for edge in ("open", "close") if schedule.get(edge) is not None]
        if len(given) == 1:
            # One edge alone would be passed over: the window is both or neither.
            missing = "close" if given == ["open"] else "open"
            raise _rejection(
                doc,
                f"{here}.schedule.{missing}",
                f"is required with {given[0]} (leave both out for open all day)",
            )
        address = sequence.get("intake_address")
        if address is not None and address != AUTO_INTAKE:  # auto: one of its own per id
            if not checking.is_one_address(address):
                # `<leads@…>` or `Leads <leads@…>` would reach the sequence as `leads@…`, and
                # two spellings of one address would pass the check below.
                raise _rejection(doc, f"{here}.intake_address", checking.ADDRESS_REASON)
            owner = first_with_address.setdefault(address.casefold(), sequence["id"])
            if owner != sequence["id"]:
                raise _rejection(
                    doc, f"{here}.intake_address", f"is already the intake address of {owner!r}"
                )
        step_ids: dict[str, int] = {}
        for number, step in enumerate(sequence.get("steps", [])):
            earlier = step_ids.setdefault(step["id"], number)
            if earlier != number:
                raise _rejection(
                    doc, f"{here}.steps[{number}].id", f"is already the id of steps[{earlier}]"
                )


def _check_created(doc: object, location: str, text: str) -> None:
    # The schema's `format: date-time` lets through what RFC 3339 does not write (an offset
    # without its colon), what the engine cannot parse (second 60) or hold
    # (0001-01-01T00:00:00+01:00 is before year 1 in UTC).
    if RFC3339_SHAPE.fullmatch(text) is None:
        raise _rejection(doc, location, RFC3339_REASON)
    try:
        parse_event_time(text)
    except TimeOutOfRange as exc:
        raise _rejection(doc, location, str(exc)) from None
    except ValueError as exc:
        raise _rejection(doc, location, f"{RFC3339_REASON}: {exc}") from None


# What the schema's `[^\s:/]` means to every reader: Python's `\s` takes the separators
# U+001C to U+001F and U+0085, JSON Schema's (ECMA-262) takes U+FEFF; an id holds none of
# them, nor any other control character, whichever reader checked it.
_NOT_IN_AN_ID = re.compile(r"[\s\ufeff\x00-\x1f\x7f-\x9f:/]")


ID_REASON = "must be a non-empty id without spaces, ':' or '/'"


def is_plain_id(value: str) -> bool:
    """Whether `value` is an id as the schemas' `[^\\s:/]+` means it to every reader."""
    return bool(value) and _NOT_IN_AN_ID.search(value) is None


def _check_id(doc: object, location: str, value: str) -> None:
    if not is_plain_id(value):
        raise _rejection(doc, location, ID_REASON)


def _check_zone(doc: object, location: str, zone: str) -> None:
    if not checking.is_iana_zone(zone):
        raise _rejection(doc, location, f"unknown IANA time zone {zone!r}")


# --- defaults


def _with_defaults(doc: dict[str, Any]) -> dict[str, Any]:
    # An account left out stays out: the engine then keeps the account in force (the
    # defaults, for a replay), rather than a later `sequences apply` of a file without one
    # wiping the lines, users and quiet hours an earlier one set.
    filled = {
        **doc,
        "sequences": [_sequence_with_defaults(sequence) for sequence in doc["sequences"]],
    }
    if "account" in doc:
        filled["account"] = account_with_defaults(doc["account"])
    return filled


def account_with_defaults(account: dict[str, Any] | None) -> dict[str, Any]:
    """The account as the engine runs it: `account` (None when left out) with its defaults."""
    return _filled(ACCOUNT_DEFAULTS, account or {})


def _sequence_with_defaults(sequence: dict[str, Any]) -> dict[str, Any]:
    filled = _filled(SEQUENCE_DEFAULTS, sequence)
    if "schedule" in filled:
        filled["schedule"] = _filled(SCHEDULE_DEFAULTS, filled["schedule"])
    filled["steps"] = [_step_with_defaults(step) for step in filled["steps"]]
    filled["triggers"] = [
        _filled(
            CALL_DURATION_TRIGGER_DEFAULTS
            if trigger["type"] == "call_duration"
            else TRIGGER_DEFAULTS,
            trigger,
        )
        for trigger in filled["triggers"]
    ]
    return filled


def _step_with_defaults(step: dict[str, Any]) -> dict[str, Any]:
    filled = _filled(STEP_DEFAULTS, step)
    if filled["delay"]["kind"] == "time_of_day":
        filled["delay"] = _filled(TIME_OF_DAY_DEFAULTS, filled["delay"])
    return filled


def _filled(defaults: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """A copy of `given` with the missing defaults after its own keys."""
    filled = dict(given)
    for key, value in defaults.items():
        if key not in filled:
            # Deep-copied so that two documents never share a default list or dict.
            filled[key] = copy.deepcopy(value)
    return filled
