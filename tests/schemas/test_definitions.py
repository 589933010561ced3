"""The sequence-definition file: loads, fills defaults, and refuses naming sequence and key."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas.definitions import (
    DefinitionRejected,
    load_definition_file,
    load_definition_text,
    validate_definition_document,
)
from tests.engine.helpers import welcome_dir
from tests.schemas.samples import DEFINITION

WELCOME = welcome_dir() / "welcome.yaml"  # the shared scenario, or the copy that ships


def document(**sequence: Any) -> dict[str, Any]:
    """The sample document with its one sequence changed by `sequence` (None removes a key)."""
    doc = copy.deepcopy(DEFINITION)
    doc["sequences"][0].update(sequence)
    doc["sequences"][0] = {k: v for k, v in doc["sequences"][0].items() if v is not None}
    return doc


def refusal(doc: object) -> DefinitionRejected:
    with pytest.raises(DefinitionRejected) as caught:
        validate_definition_document(doc)
    return caught.value


# --- loading


def test_the_welcome_scenario_loads() -> None:
    loaded = load_definition_file(WELCOME)

    welcome = loaded["sequences"][0]
    assert loaded["account"]["timezone"] == "America/Denver"
    assert welcome["id"] == "welcome"
    assert [step["type"] for step in welcome["steps"]] == [
        "send_sms",
        "email_contact",
        "progressive_dialer",
        "add_tag",
    ]
    assert welcome["steps"][2]["delay"] == {"kind": "time_of_day", "days": 1, "at": "09:15"}


def test_a_json_file_loads_like_a_yaml_one(tmp_path: Path) -> None:
    path = tmp_path / "sequences.json"
    path.write_bytes(orjson.dumps(DEFINITION))

    assert load_definition_file(path) == load_definition_file(str(path)) == DEFINITION


def test_yaml_reads_times_dates_and_on_as_written() -> None:
    text = """
account: {timezone: UTC, opt_out_phrase: Reply STOP}
sequences:
  - id: dnc
    name: DNC follow-up
    created: 2027-07-01T09:00:00Z
    schedule: {open: 09:00, close: 17:30}
    steps:
      - {id: s1, type: add_tag, tag: yes, delay: {kind: time_of_day, at: 10:00}}
    triggers:
      - {type: dnc_changed, on: removed}
"""

    loaded = load_definition_text(text)

    sequence = loaded["sequences"][0]
    assert sequence["created"] == "2027-07-01T09:00:00Z"
    assert sequence["schedule"] == {
        "open": "09:00",
        "close": "17:30",
        "enroll_only_within_hours": False,
    }
    assert sequence["steps"][0]["tag"] == "yes"
    assert sequence["steps"][0]["delay"] == {"kind": "time_of_day", "at": "10:00", "days": 0}
    assert sequence["triggers"][0] == {"type": "dnc_changed", "on": "removed", "action": "enroll"}


def test_a_yaml_flow_mapping_is_not_mistaken_for_json() -> None:
    loaded = load_definition_text("{account: {timezone: UTC, opt_out_phrase: STOP}, sequences: []}")

    assert loaded["sequences"] == []


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("account: [unclosed", "not valid YAML: "),
        ("account: {timezone: UTC}\naccount: {timezone: UTC}\nsequences: []", "not valid YAML: "),
        (b"\xff\xfe\x00account", "not valid UTF-8"),
        ("", "must be an object"),
        ("- just\n- a list", "must be an object"),
        ("{1: 2}", "keys must be strings"),
    ],
)
def test_a_file_that_does_not_parse_is_refused_whole(text: str | bytes, reason: str) -> None:
    with pytest.raises(DefinitionRejected) as caught:
        load_definition_text(text)

    refused = caught.value
    assert refused.sequence_id is None
    assert refused.reason.startswith(reason)
    assert str(refused).startswith(f"{refused.key}: {reason}")


def test_a_duplicate_yaml_key_names_its_line() -> None:
    with pytest.raises(DefinitionRejected, match=r"found the key 'account' twice \(line 2"):
        load_definition_text("account: {timezone: UTC}\naccount: {timezone: UTC}\nsequences: []")


@pytest.mark.parametrize(
    ("value", "tag"),
    [
        ("!!bool maybe", "!!bool"),
        ("!!int x", "!!int"),
        ("!!int ''", "!!int"),
        ("!!int [1]", "!!int"),
        ("!!float ''", "!!float"),
        ("!!timestamp 2020-13-45", "!!timestamp"),
        ("!!map x", "!!map"),
        ("!!set [a]", "!!set"),
    ],
)
def test_a_value_not_of_its_explicit_tag_is_refused_at_its_place(value: str, tag: str) -> None:
    # PyYAML's constructors fail on these with Python's own errors (a KeyError, a
    # ValueError): a traceback and exit 1 until they were said as YAML's.
    text = f"sequences:\n  - id: s\n    name: {value}\n    steps: []\n"
    with pytest.raises(DefinitionRejected) as caught:
        load_definition_text(text)
    assert caught.value.reason == (
        f"not valid YAML: a value tagged {tag} that is no {tag[2:]} (line 3, column 11)"
    )


def test_a_key_that_is_no_string_is_named_as_the_file_writes_it() -> None:
    text = "sequences:\n  - {id: s, name: S, steps: [{id: a, type: add_tag, tag: x, true: 1}]}\n"
    with pytest.raises(DefinitionRejected) as caught:
        load_definition_text(text)
    assert str(caught.value) == "sequence 's': steps[0].true: keys must be strings"


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DefinitionRejected, match=r"^file: cannot be read: No such file"):
        load_definition_file(tmp_path / "nope.yaml")


# --- refusals name the sequence and the key


def one_step(**step: Any) -> dict[str, Any]:
    return {"steps": [{"id": "s1", **step}]}


def one_trigger(**trigger: Any) -> dict[str, Any]:
    return {"triggers": [trigger]}


HH_MM = "must be a time HH:MM (00:00 to 23:59)"


@pytest.mark.parametrize(
    ("sequence", "key", "reason"),
    [
        ({"name": None}, "name", "is required"),
        ({"id": "has space"}, "id", "must be a non-empty id without spaces, ':' or '/'"),
        # Spaces to one reader of the schema's \s and not the other (ECMA-262, Python).
        ({"id": "s\ufeff1"}, "id", "must be a non-empty id without spaces, ':' or '/'"),
        ({"id": "s\x1c1"}, "id", "must be a non-empty id without spaces, ':' or '/'"),
        ({"process_on": "weekends"}, "process_on", "must be one of every_day, business_days"),
        ({"throttle_per_minute": 0}, "throttle_per_minute", "must be at least 1"),
        ({"throttle_per_minute": "fast"}, "throttle_per_minute", "must be an integer or null"),
        ({"remove_on_response": "yes"}, "remove_on_response", "must be a boolean"),
        ({"created": "July 1st"}, "created", "must be an RFC 3339 date-time"),
        ({"intake_address": "nobody"}, "intake_address", "must be an e-mail address"),
        ({"schedule": {"open": "9:00"}}, "schedule.open", HH_MM),
        ({"schedule": {"close": "24:00"}}, "schedule.close", HH_MM),
        ({"schedule": {"open": "09:00"}}, "schedule.close", "is required with open"),
        ({"schedule": {"timezone": "UTC", "close": "17:00"}}, "schedule.open", "is required with"),
        ({"schedule": {"timezone": "Mars/Base"}}, "schedule.timezone", "unknown IANA time zone"),
        (one_step(type="fax"), "steps[0].type", "must be one of progressive_dialer"),
        ({"steps": [{"type": "mark_dnc"}]}, "steps[0].id", "is required"),
        (one_step(type="send_sms"), "steps[0].text", "is required"),
        (one_step(type="send_mms", text="x"), "steps[0].media_url", "is required"),
        (one_step(type="email_contact", subject="x"), "steps[0].body", "is required"),
        (one_step(type="email_ring_group", body="x"), "steps[0].subject", "is required"),
        (one_step(type="sms_ring_group"), "steps[0].text", "is required"),
        (one_step(type="add_tag"), "steps[0].tag", "is required"),
        (one_step(type="remove_tag"), "steps[0].tag", "is required"),
        (one_step(type="change_disposition"), "steps[0].disposition", "is required"),
        (one_step(type="change_owner"), "steps[0].owner_id", "is required"),
        (one_step(type="send_webhook"), "steps[0].url", "is required"),
        (one_step(type="send_webhook", url="ftp://x"), "steps[0].url", "must be an http(s) URL"),
        (one_step(type="ringless_voicemail"), "steps[0].recording_url", "is required"),
        (one_step(type="round_robin_owner"), "steps[0].owners", "is required"),
        (one_step(type="round_robin_owner", owners=[]), "steps[0].owners", "must not be empty"),
        (one_step(type="add_line"), "steps[0].line_id", "is required"),
        (one_step(type="change_lead_source"), "steps[0].lead_source", "is required"),
        (
            one_step(type="remove_from_power_dialer", all_users="y"),
            "steps[0].all_users",
            "must be a boolean",
        ),
        (one_step(type="mark_dnc", delay={}), "steps[0].delay.kind", "is required"),
        (
            one_step(type="mark_dnc", delay={"kind": "default", "unit": "days"}),
            "steps[0].delay.amount",
            "is required",
        ),
        (
            one_step(type="mark_dnc", delay={"kind": "default", "amount": 2}),
            "steps[0].delay.unit",
            "is required",
        ),
        (
            one_step(type="mark_dnc", delay={"kind": "default", "amount": -1, "unit": "days"}),
            "steps[0].delay.amount",
            "must be at least 0",
        ),
        (
            one_step(type="mark_dnc", delay={"kind": "default", "amount": 1, "unit": "weeks"}),
            "steps[0].delay.unit",
            "must be one of minutes, hours, days",
        ),
        (
            one_step(type="mark_dnc", delay={"kind": "time_of_day"}),
            "steps[0].delay.at",
            "is required",
        ),
        (
            one_step(type="mark_dnc", delay={"kind": "time_of_day", "at": "10:00", "days": -1}),
            "steps[0].delay.days",
            "must be at least 0",
        ),
        (
            {"steps": [{"id": "s1", "type": "mark_dnc"}, {"id": "s1", "type": "mark_dnc"}]},
            "steps[1].id",
            "is already the id of steps[0]",
        ),
        (
            one_step(type="mark_dnc", delay={"kind": "default", "amount": 3000000, "unit": "days"}),
            "steps[0].delay.amount",
            "must be at most 3650 days",
        ),
        (
            one_step(type="mark_dnc", delay={"kind": "default", "amount": 3651, "unit": "days"}),
            "steps[0].delay.amount",
            "must be at most 3650 days",
        ),
        (
            one_step(type="mark_dnc", delay={"kind": "default", "amount": 87601, "unit": "hours"}),
            "steps[0].delay.amount",
            "must be at most 87600 hours (3650 days)",
        ),
        (
            one_step(
                type="mark_dnc", delay={"kind": "default", "amount": 5256001, "unit": "minutes"}
            ),
            "steps[0].delay.amount",
            "must be at most 5256000 minutes (3650 days)",
        ),
        (
            one_step(
                type="mark_dnc", delay={"kind": "time_of_day", "at": "10:00", "days": 99999999999}
            ),
            "steps[0].delay.days",
            "must be at most 3650",
        ),
        (
            one_step(type="mark_dnc", delay={"kind": "time_of_day", "at": "10:00", "days": 3651}),
            "steps[0].delay.days",
            "must be at most 3650",
        ),
        ({"created": "2027-07-01T10:00:60Z"}, "created", "must be an RFC 3339 date-time"),
        # The schema's format check lets an offset without its colon through; RFC 3339 does not.
        ({"created": "2027-07-01T12:00:00+0500"}, "created", "must be an RFC 3339 date-time"),
        (
            {"created": "0001-01-01T00:00:00+01:00"},
            "created",
            "must be between 1900-01-01T00:00:00Z and 9000-12-31T23:59:59Z",
        ),
        (
            {"created": "9999-12-31T23:59:59Z"},
            "created",
            "must be between 1900-01-01T00:00:00Z and 9000-12-31T23:59:59Z",
        ),
        (one_trigger(type="birthday"), "triggers[0].type", "must be one of contact_disposition"),
        (one_trigger(type="contact_disposition"), "triggers[0].dispositions", "is required"),
        (
            one_trigger(type="call_disposition", dispositions=["x"], action="pause"),
            "triggers[0].action",
            "must be one of enroll, disenroll",
        ),
        (one_trigger(type="call_duration", seconds=60), "triggers[0].metric", "is required"),
        (
            one_trigger(type="call_duration", metric="talk_time"),
            "triggers[0].seconds",
            "is required",
        ),
        (
            one_trigger(type="call_duration", metric="ring_time", seconds=1),
            "triggers[0].metric",
            "must be one of talk_time, wait_time, duration",
        ),
        (
            one_trigger(type="dnc_changed", on=["added", "flipped"]),
            "triggers[0].on",
            "must be added, removed, or a list of those",
        ),
        (
            one_trigger(type="appointment", statuses=["missed"]),
            "triggers[0].statuses[0]",
            "must be one of scheduled, shown, canceled",
        ),
        (one_trigger(type="contact_tagged"), "triggers[0].tags", "is required"),
        (one_trigger(type="tag_removed", tags=[]), "triggers[0].tags", "must not be empty"),
    ],
)
def test_a_bad_sequence_is_refused_naming_it_and_the_key(
    sequence: dict[str, Any], key: str, reason: str
) -> None:
    refused = refusal(document(**sequence))

    assert refused.sequence_id == sequence.get("id", "welcome")
    assert refused.key == key
    assert refused.reason.startswith(reason)
    assert str(refused) == f"sequence {refused.sequence_id!r}: {key}: {refused.reason}"


# CONTRACT.md §2: what each trigger type is told, written out rather than read from the
# schema, so a schema that stops requiring one fails here.
TRIGGER_KEYS: dict[str, dict[str, Any]] = {
    "contact_disposition": {"dispositions": ["interested"]},
    "call_disposition": {"dispositions": ["interested"]},
    "call_duration": {"metric": "talk_time", "seconds": 60},
    "dnc_changed": {"on": "added"},
    "appointment": {"statuses": ["scheduled"]},
    "contact_tagged": {"tags": ["hot"]},
    "tag_removed": {"tags": ["hot"]},
}


# The seed's appointment and DNC triggers read bare ("whenever an appointment is scheduled,
# displayed, or canceled"; "added to or removed from the DNC list"): left out, any.
OPTIONAL_TRIGGER_KEYS = {"dnc_changed": "on", "appointment": "statuses"}


@pytest.mark.parametrize(
    ("kind", "key"),
    [
        (kind, key)
        for kind, keys in TRIGGER_KEYS.items()
        for key in keys
        if OPTIONAL_TRIGGER_KEYS.get(kind) != key
    ],
)
def test_a_trigger_without_what_its_type_needs_is_refused(kind: str, key: str) -> None:
    trigger = {"type": kind, **{k: v for k, v in TRIGGER_KEYS[kind].items() if k != key}}

    refused = refusal(document(**one_trigger(**trigger)))

    assert (refused.key, refused.reason) == (f"triggers[0].{key}", "is required")


@pytest.mark.parametrize(("kind", "key"), OPTIONAL_TRIGGER_KEYS.items())
def test_an_appointment_or_dnc_trigger_may_name_no_values(kind: str, key: str) -> None:
    trigger = {"type": kind, **{k: v for k, v in TRIGGER_KEYS[kind].items() if k != key}}

    loaded = validate_definition_document(document(**one_trigger(**trigger)))

    assert loaded["sequences"][0]["triggers"][0]["type"] == kind


def test_each_trigger_with_what_its_type_needs_loads() -> None:
    triggers = [{"type": kind, **keys} for kind, keys in TRIGGER_KEYS.items()]
    loaded = validate_definition_document(document(triggers=triggers))
    assert [t["type"] for t in loaded["sequences"][0]["triggers"]] == list(TRIGGER_KEYS)


def account(**changes: Any) -> dict[str, Any]:
    return {"account": {**DEFINITION["account"], **changes}}


@pytest.mark.parametrize(
    ("change", "key", "reason"),
    [
        ({"account": "UTC"}, "account", "must be an object"),
        ({"sequences": None}, "sequences", "is required"),
        ({"sequences": {}}, "sequences", "must be an array"),
        (account(opt_out_phrase=""), "account.opt_out_phrase", "must not be empty"),
        (account(opt_out_phrase=" \n"), "account.opt_out_phrase", "must not be blank"),
        (account(timezone="Moon/Tranquility"), "account.timezone", "unknown IANA time zone"),
        (
            account(quiet_hours={"start": "8:00", "end": "21:00"}),
            "account.quiet_hours.start",
            HH_MM,
        ),
        (account(quiet_hours={"start": "08:00"}), "account.quiet_hours.end", "is required"),
        (
            account(quiet_hours={"start": "21:00", "end": "08:00"}),
            "account.quiet_hours.end",
            "must be after start (21:00)",
        ),
        (
            account(quiet_hours={"start": "09:00", "end": "09:00"}),
            "account.quiet_hours.end",
            "must be after start (09:00)",
        ),
        (
            account(lines={"line-1": "2125550000"}),
            "account.lines.line-1",
            "must match E.164 (+ and up to 15 digits)",
        ),
        (
            account(users={"u-7": {"name": "Sam", "phone": "212-555-0007"}}),
            "account.users.u-7.phone",
            "must match E.164 (+ and up to 15 digits)",
        ),
        (account(users={"u-7": {"phone": "+1"}}), "account.users.u-7.name", "is required"),
        (
            account(users={"u-7": {"name": "Sam", "email": "nope"}}),
            "account.users.u-7.email",
            "must be one e-mail address",
        ),
        (account(ring_groups={"rg": "u-7"}), "account.ring_groups.rg", "must be an array"),
        ({"sequences": [{"name": "no id"}]}, "sequences[0].id", "is required"),
        ({"sequences": ["welcome"]}, "sequences[0]", "must be an object"),
    ],
)
def test_a_bad_account_or_file_is_refused_naming_the_key(
    change: dict[str, Any], key: str, reason: str
) -> None:
    doc = {k: v for k, v in {**DEFINITION, **change}.items() if v is not None}

    refused = refusal(doc)

    assert refused.sequence_id is None
    assert refused.key == key
    assert refused.reason.startswith(reason)
    assert str(refused) == f"{key}: {refused.reason}"


def test_a_file_of_sequences_alone_loads_and_leaves_the_account_to_the_engine() -> None:
    loaded = load_definition_text("sequences:\n  - {id: hello, name: Hello}\n")

    assert "account" not in loaded
    assert [sequence["id"] for sequence in loaded["sequences"]] == ["hello"]


@pytest.mark.parametrize(
    ("given", "filled"),
    [
        ({}, {"timezone": "UTC", "opt_out_phrase": "Reply STOP to opt out."}),
        ({"timezone": "America/Denver"}, {"opt_out_phrase": "Reply STOP to opt out."}),
        ({"opt_out_phrase": "Text STOP to end."}, {"timezone": "UTC"}),
    ],
)
def test_an_account_key_left_out_takes_its_default(
    given: dict[str, Any], filled: dict[str, Any]
) -> None:
    loaded = validate_definition_document({"account": given, "sequences": []})

    assert loaded["account"] == {
        **given,
        **filled,
        "lines": {},
        "users": {},
        "ring_groups": {},
    }


@pytest.mark.parametrize(
    "delay",
    [
        {"kind": "default", "amount": 3650, "unit": "days"},
        {"kind": "default", "amount": 87600, "unit": "hours"},
        {"kind": "default", "amount": 5256000, "unit": "minutes"},
        {"kind": "time_of_day", "at": "10:00", "days": 3650},
    ],
)
def test_a_delay_of_ten_years_is_the_longest_that_loads(delay: dict[str, Any]) -> None:
    doc = document(steps=[{"id": "s1", "type": "mark_dnc", "delay": delay}])

    loaded = validate_definition_document(doc)

    assert loaded["sequences"][0]["steps"][0]["delay"] == delay


def test_a_too_long_delay_in_a_file_is_refused_naming_the_sequence_and_field(
    tmp_path: Path,
) -> None:
    path = tmp_path / "sequences.yaml"
    path.write_text(
        "sequences:\n"
        "  - id: slow\n"
        "    name: Slow\n"
        "    steps:\n"
        "      - {id: s1, type: mark_dnc, delay: {kind: time_of_day, days: 99999999999, "
        'at: "10:00"}}\n'
    )

    with pytest.raises(DefinitionRejected) as caught:
        load_definition_file(path)

    assert str(caught.value) == "sequence 'slow': steps[0].delay.days: must be at most 3650"


def test_two_sequences_with_one_id_are_refused() -> None:
    doc = {**DEFINITION, "sequences": [DEFINITION["sequences"][0]] * 2}

    refused = refusal(doc)

    assert str(refused) == "sequence 'welcome': id: is already the id of sequences[0]"


def test_two_sequences_with_one_intake_address_are_refused() -> None:
    first = {"id": "a", "name": "A", "intake_address": "leads@intake.example.com"}
    second = {"id": "b", "name": "B", "intake_address": "Leads@intake.example.com"}

    refused = refusal({**DEFINITION, "sequences": [first, second]})

    assert str(refused) == "sequence 'b': intake_address: is already the intake address of 'a'"


@pytest.mark.parametrize("written", ["<leads@intake.example.com>", "leads@intake.example.com>"])
def test_an_intake_address_is_one_bare_address(written: str) -> None:
    # Mail reaches `<leads@…>` as `leads@…`: taken, it would slip past the check above.
    refused = refusal(document(intake_address=written))
    assert (refused.sequence_id, refused.key) == ("welcome", "intake_address")
    assert refused.reason.startswith("must be one e-mail address")


def test_runtime_problems_are_not_refusals() -> None:
    doc = document(
        outbound_line=None,
        steps=[
            {"id": "s1", "type": "send_sms", "text": "Hi [Nickname]"},
            {"id": "s2", "type": "progressive_dialer"},
            {"id": "s3", "type": "sms_ring_group", "text": "x", "ring_group": "rg-nobody"},
            {"id": "s4", "type": "add_line", "line_id": "line-404"},
        ],
    )

    loaded = validate_definition_document(doc)

    assert [step["id"] for step in loaded["sequences"][0]["steps"]] == ["s1", "s2", "s3", "s4"]


def test_unknown_keys_are_kept_for_forward_compatibility() -> None:
    loaded = validate_definition_document(document(color="blue"))

    assert loaded["sequences"][0]["color"] == "blue"


# --- defaults


def test_defaults_are_filled_in() -> None:
    bare = {
        "account": {"timezone": "UTC", "opt_out_phrase": "STOP"},
        "sequences": [
            {
                "id": "w",
                "name": "W",
                "schedule": {"open": "09:00", "close": "17:00"},
                "steps": [
                    {"id": "s1", "type": "mark_dnc"},
                    {
                        "id": "s2",
                        "type": "mark_dnc",
                        "delay": {"kind": "time_of_day", "at": "10:00"},
                    },
                ],
                "triggers": [
                    {"type": "contact_disposition", "dispositions": ["hot"]},
                    {"type": "call_disposition", "dispositions": ["no"], "action": "disenroll"},
                    {"type": "contact_created"},
                    {"type": "call_duration", "metric": "talk_time", "seconds": 60},
                ],
            }
        ],
    }

    loaded = validate_definition_document(bare)

    account = loaded["account"]
    sequence = loaded["sequences"][0]
    assert (account["lines"], account["users"], account["ring_groups"]) == ({}, {}, {})
    assert "quiet_hours" not in account
    assert sequence["process_on"] == "business_days"
    assert sequence["run_on_holidays"] is False
    assert sequence["prevent_enrollment_if_communicated"] is False
    assert sequence["throttle_per_minute"] is None
    assert sequence["remove_on_response"] is True
    assert sequence["remove_on_manual_call"] is True
    assert sequence["remove_on_opt_out"] is True
    assert sequence["schedule"]["enroll_only_within_hours"] is False
    assert sequence["steps"][0]["delay"] == {"kind": "none"}
    assert sequence["steps"][1]["delay"] == {"kind": "time_of_day", "at": "10:00", "days": 0}
    assert [trigger.get("action") for trigger in sequence["triggers"]] == [
        "enroll",
        "disenroll",
        "enroll",
        "disenroll",  # a call_duration trigger's only action
    ]


def test_validation_leaves_the_given_document_alone() -> None:
    bare = {
        "account": {"timezone": "UTC", "opt_out_phrase": "STOP"},
        "sequences": [{"id": "w", "name": "W", "steps": [{"id": "s1", "type": "mark_dnc"}]}],
    }
    before = copy.deepcopy(bare)

    first = validate_definition_document(bare)
    second = validate_definition_document(bare)

    assert bare == before
    assert first == second
    assert first["sequences"][0]["steps"] is not second["sequences"][0]["steps"]


def test_a_loaded_document_validates_to_itself() -> None:
    loaded = validate_definition_document(document())

    assert validate_definition_document(loaded) == loaded


# --- documents that would hang or crash a parser


def _refusal(text: str) -> str:
    with pytest.raises(DefinitionRejected) as refused:
        load_definition_text(text)
    return str(refused.value)


def test_an_alias_bomb_is_refused_without_being_expanded() -> None:
    # nine levels of nine aliases: 387 million strings once expanded
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level, name in enumerate("bcdefghi"):
        previous = "abcdefghi"[level]
        lines.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
    lines.append("sequences: []")
    assert "more than 1,000,000 values (each YAML alias counted as" in _refusal("\n".join(lines))


def test_aliases_a_real_file_shares_are_still_welcome() -> None:
    text = """
account: {timezone: UTC}
sequences:
  - {id: a, name: A, schedule: &hours {timezone: UTC, open: "09:00", close: "17:00"}}
  - {id: b, name: B, schedule: *hours}
"""
    loaded = load_definition_text(text)
    assert loaded["sequences"][1]["schedule"]["open"] == "09:00"


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("sequences: []\nx: " + "[" * 500 + "]" * 500, "nested too deeply"),
        ('{"sequences": [], "x": ' + "[" * 2000 + "]" * 2000 + "}", "nested too deeply"),
        ("sequences: []\nx: " + "[" * 80 + "]" * 80, "nested more than 64 levels deep"),
        ("a: &a [*a]\nsequences: []", "nested more than 64 levels deep"),
        (
            "sequences: [{id: a, name: A, throttle_per_minute: 1" + "0" * 4300 + "}]",
            "a number of 4301 digits is too long",
        ),
    ],
)
def test_a_document_too_deep_or_too_long_is_refused_with_a_reason(text: str, said: str) -> None:
    assert said in _refusal(text)


def test_a_value_too_deep_is_named_with_its_sequence_and_place() -> None:
    refused = refusal(document(note=orjson.loads(b"[" * 70 + b"]" * 70)))
    assert (refused.sequence_id, refused.key) == ("welcome", "note[0][0][0][0][0]…")
    assert refused.reason == "nested more than 64 levels deep"


def test_a_key_repeated_in_a_json_file_is_refused_as_in_yaml() -> None:
    text = (
        '{"sequences": [{"id": "a", "name": "A", "steps": [{"id": "s", "type": "add_tag",'
        ' "tag": "x", "delay": {"kind": "default", "amount": 5, "unit": "days", "amount": 0}}]}]}'
    )
    assert "found the key 'amount' twice" in _refusal(text)


def test_a_document_that_never_was_text_is_held_to_the_same_depth() -> None:
    # The HTTP API and a published `sequence.applied` hand over parsed JSON (orjson goes
    # 1,024 levels deep): it must be refused as a file is, not overflow the checks' stack.
    deep = orjson.loads(b'{"sequences": [], "x": ' + b"[" * 1020 + b"]" * 1020 + b"}")
    with pytest.raises(DefinitionRejected) as refused:
        validate_definition_document(deep)
    assert "nested more than 64 levels deep" in str(refused.value)


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"throttle_per_minute": 10**30}, "throttle_per_minute"),
        ({"note": -(2**63) - 1}, "note"),  # a key the engine ignores is written all the same
        ({"tags_seen": [1, 2**64]}, "tags_seen[1]"),
    ],
)
def test_an_integer_json_output_cannot_hold_is_refused_naming_where(
    change: dict[str, Any], key: str
) -> None:
    refused = refusal(document(**change))
    assert (refused.sequence_id, refused.key) == ("welcome", key)
    assert refused.reason == "is too large a number (at most 9,223,372,036,854,775,807)"
    assert validate_definition_document(document(throttle_per_minute=2**63 - 1))


def test_a_json_file_with_a_number_of_thousands_of_digits_is_refused_not_a_crash() -> None:
    with pytest.raises(DefinitionRejected) as caught:
        load_definition_text('{"sequences": [], "n": ' + "9" * 5000 + "}")
    assert (caught.value.key, caught.value.reason) == (
        "file",
        "not valid JSON: a number of more than 4,300 digits",
    )


def test_a_nul_character_in_a_definition_is_refused_naming_where() -> None:
    # PostgreSQL (the definitions table, the read models) cannot hold U+0000
    steps = [{"id": "s1", "type": "send_sms", "delay": {"kind": "none"}, "text": "Hi\u0000"}]
    refused = refusal(document(steps=steps))
    assert (refused.sequence_id, refused.key) == ("welcome", "steps[0].text")
    assert refused.reason == "must not contain the NUL character (\\u0000)"
    key_refused = refusal(document(**{"note\u0000": "x"}))
    assert key_refused.key == "note\\u0000"


def text_refusal(text: str) -> DefinitionRejected:
    with pytest.raises(DefinitionRejected) as caught:
        load_definition_text(text)
    return caught.value


def test_a_lone_surrogate_in_a_definition_is_refused_naming_where() -> None:
    # a `\\ud800` escape in JSON or YAML loads, and no output holding it can be written
    refused = text_refusal('{"sequences": [{"id": "s", "name": "a\\ud800"}]}')
    assert (refused.sequence_id, refused.key) == ("s", "name")
    assert "surrogate code point" in refused.reason
    yaml_key = text_refusal('sequences:\n  - {id: s, name: S, "\\udc00": 1}')
    assert yaml_key.key == "\\udc00"  # escaped, so the message itself can be written


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (
            "sequences:\n  - {id: s, name: S,"
            " steps: [{id: a, type: add_tag, tag: t, z: !!binary aGk=}]}",
            "steps[0].z",
        ),
        (
            "sequences:\n  - {id: s, name: S, triggers: [{type: contact_created, z: !!set {a}}]}",
            "triggers[0].z",
        ),
        ("sequences:\n  - {id: s, name: S, when: !!timestamp 2027-01-01}", "when"),
        ("sequences:\n  - {id: s, name: S, z: !!omap [a: 1]}", "z[0]"),
    ],
    ids=["binary", "set", "timestamp", "omap"],
)
def test_a_yaml_value_json_cannot_write_is_refused_naming_where(text: str, key: str) -> None:
    refused = text_refusal(text)
    assert (refused.sequence_id, refused.key) == ("s", key)
    assert refused.reason.startswith("is no JSON value")


@pytest.mark.parametrize("number", ["NaN", "-Infinity", "1e400"])
def test_a_number_that_is_not_finite_is_refused(number: str) -> None:
    text = '{"sequences": [{"id": "s", "name": "S", "x": ' + number + "}]}"
    refused = text_refusal(text)
    assert (refused.key, refused.reason) == ("x", "must be a finite number, not NaN or infinity")


def test_a_file_named_json_is_read_as_json_and_its_mistakes_told_in_json_words(
    tmp_path: Path,
) -> None:
    path = tmp_path / "sequences.json"
    path.write_text('{"account": {}, "sequences": [],}')  # a trailing comma: YAML would take it

    with pytest.raises(DefinitionRejected) as refused:
        load_definition_file(path)

    assert str(refused.value) == (
        "file: not valid JSON: Expecting property name enclosed in double quotes"
        " (line 1, column 33)"
    )


def test_a_file_named_yaml_may_hold_a_yaml_flow_mapping(tmp_path: Path) -> None:
    path = tmp_path / "sequences.yaml"
    path.write_text('{"account": {}, "sequences": [],}')

    assert load_definition_file(path)["sequences"] == []
