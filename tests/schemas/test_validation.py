"""decode_event: every contract type decodes and round-trips; every refusal names its field."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import checking, validation
from schemas.envelope import CloudEvent
from schemas.registry import EVENT_TYPES
from schemas.validation import EventRejected, data_schema_path, decode_event, encode_event
from tests.schemas.samples import DEFINITION, SAMPLES, raw_event

ALL_TYPES = sorted(EVENT_TYPES)


def rejection(raw: bytes | str) -> EventRejected:
    with pytest.raises(EventRejected) as caught:
        decode_event(raw)
    return caught.value


def outcome(raw: bytes) -> CloudEvent | EventRejected:
    """What decoding gives, event or rejection, for properties that hold either way."""
    try:
        return decode_event(raw)
    except EventRejected as refused:
        return refused


# --- every type


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_a_valid_sample_of_every_type_decodes_and_round_trips(event_type: str) -> None:
    raw = raw_event(event_type)

    event = decode_event(raw)

    assert event.type == event_type
    assert event.data == SAMPLES[event_type]
    assert event.dataversion == EVENT_TYPES[event_type].version
    assert decode_event(encode_event(event)) == event


def _required_of(event_type: str) -> list[str]:
    if event_type == "sequence.applied":
        return list(checking.schema_document("sequences.schema.json")["required"])
    return list(checking.schema_document(data_schema_path(event_type, 1))["required"])


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_a_missing_required_field_is_named(event_type: str) -> None:
    field = _required_of(event_type)[0]
    data = {key: value for key, value in SAMPLES[event_type].items() if key != field}

    refused = rejection(raw_event(event_type, data))

    assert refused.field == f"data.{field}"
    assert refused.reason == "is required"
    assert str(refused) == f"data.{field}: is required"


# CONTRACT.md §1.1, the bold fields: written out here, not read from the schemas, so a
# schema that stops requiring one fails a test.
CONTRACT_REQUIRED = {
    "contact.created": ["contact_id"],
    "contact.updated": ["contact_id"],
    "contact.tag_added": ["contact_id", "tag"],
    "contact.tag_removed": ["contact_id", "tag"],
    "contact.disposition_changed": ["contact_id", "disposition"],
    "contact.dnc_changed": ["contact_id", "dnc"],
    "contact.opted_out": ["contact_id"],
    "contact.opted_in": ["contact_id"],
    "call.completed": ["call_id", "contact_id", "direction", "answered"],
    "message.received": ["message_id", "contact_id", "channel"],
    "appointment.changed": ["appointment_id", "contact_id", "status"],
    "lead.email_received": ["to", "body"],
    "enrollment.requested": ["sequence_id"],
    "enrollment.removal_requested": ["sequence_id"],
}


@pytest.mark.parametrize(
    ("event_type", "field"),
    [(kind, field) for kind, fields in CONTRACT_REQUIRED.items() for field in fields],
)
def test_every_field_the_contract_requires_is_refused_when_missing(
    event_type: str, field: str
) -> None:
    data = {key: value for key, value in SAMPLES[event_type].items() if key != field}

    refused = rejection(raw_event(event_type, data))

    assert str(refused) == f"data.{field}: is required"


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_a_field_of_the_wrong_type_is_named(event_type: str) -> None:
    field = _required_of(event_type)[-1]
    data = {**SAMPLES[event_type], field: 12345}

    refused = rejection(raw_event(event_type, data))

    assert refused.field == f"data.{field}"
    assert refused.reason.startswith("must be")


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_data_that_is_not_an_object_is_refused(event_type: str) -> None:
    refused = rejection(raw_event(event_type, ["not", "an", "object"]))

    assert str(refused) == "data: must be an object"


# --- the envelope


@pytest.mark.parametrize(
    ("raw", "field", "reason"),
    [
        (b"{not json", "event", "not valid JSON"),
        (b"", "event", "not valid JSON"),
        (b"\xff\xfe", "event", "not valid JSON"),
        (b"[1, 2]", "event", "must be an object"),
        (raw_event("contact.tag_added", specversion="0.3"), "specversion", 'must be "1.0"'),
        (raw_event("contact.tag_added", id=""), "id", "must not be empty"),
        (raw_event("contact.tag_added", source=None), "source", "is required"),
        (raw_event("contact.tag_added", type="foo.bar"), "type", "unknown event type 'foo.bar'"),
        (raw_event("contact.tag_added", time=None), "time", "is required"),
        (raw_event("contact.tag_added", time=1700000000), "time", "must be a string"),
        (raw_event("contact.tag_added", time="yesterday"), "time", "must be an RFC 3339"),
        (raw_event("contact.tag_added", time="2027-07-02T20:30:00"), "time", "must be an RFC 3339"),
        (
            raw_event("contact.tag_added", time="2027-07-02 20:30:00Z"),
            "time",
            "must be an RFC 3339",
        ),
        (
            raw_event("contact.tag_added", time="2027-02-30T20:30:00Z"),
            "time",
            "must be an RFC 3339",
        ),
        (raw_event("contact.tag_added", subject=7), "subject", "must be a string"),
        (
            raw_event("contact.tag_added").replace(b'"subject":"c-1"', b'"subject":null'),
            "subject",
            "must be a string",
        ),
        (raw_event("contact.tag_added", dataversion=1), "dataversion", "must be a string"),
        (raw_event("contact.tag_added", dataversion="v1"), "dataversion", "must be a string of"),
        (raw_event("contact.tag_added", dataversion="2"), "dataversion", "unsupported version 2"),
        (raw_event("contact.tag_added", datacontenttype="text/xml"), "datacontenttype", "must be"),
        (
            b'{"specversion":"1.0","id":"e-1","source":"crm","type":"contact.tag_added",'
            b'"time":"2027-07-02T20:30:00Z"}',
            "data",
            "is required",
        ),
    ],
)
def test_a_bad_envelope_is_refused_naming_the_attribute(
    raw: bytes, field: str, reason: str
) -> None:
    refused = rejection(raw)

    assert refused.field == field
    assert refused.reason.startswith(reason)


def test_the_envelope_attributes_come_through() -> None:
    raw = raw_event("contact.tag_added", time="2027-07-02T22:30:00.250+02:00", traceparent="00-ab")

    event = decode_event(raw)

    assert event == CloudEvent(
        id="e-1",
        source="crm",
        type="contact.tag_added",
        time=datetime(2027, 7, 2, 20, 30, 0, 250000, tzinfo=UTC),
        subject="c-1",
        data={"contact_id": "c-1", "tag": "hot"},
        dataversion=1,
        extensions={"traceparent": "00-ab"},
    )
    assert decode_event(encode_event(event)) == event


def test_a_str_decodes_like_bytes() -> None:
    raw = raw_event("contact.tag_added")

    assert decode_event(raw.decode()) == decode_event(raw)


def test_a_contact_event_without_subject_is_refused() -> None:
    # CONTRACT.md §1: `subject` is the contact id of every contact-scoped event (the key).
    refused = rejection(raw_event("contact.tag_added", subject=None))

    assert str(refused) == "subject: is required: the contact id"


def test_an_event_about_no_one_contact_needs_no_subject() -> None:
    event = decode_event(raw_event("lead.email_received", subject=None))

    assert event.subject is None


def test_a_subject_other_than_the_contact_is_refused() -> None:
    refused = rejection(raw_event("contact.tag_added", subject="c-2"))

    assert str(refused) == "subject: must equal data.contact_id"


def test_a_subject_of_a_non_contact_event_is_not_compared() -> None:
    event = decode_event(raw_event("sequence.defined", subject="sequence:welcome"))

    assert event.subject == "sequence:welcome"


# --- the data of particular types


@pytest.mark.parametrize("new_id", ["copy\ufeff", "copy\u0001", "copy\u007f", "copy\u009b", "a b"])
def test_a_copys_id_is_refused_as_a_files_sequence_id_would_be(new_id: str) -> None:
    data = {"sequence_id": "welcome", "new_id": new_id}

    refused = rejection(raw_event("sequence.copy_requested", data, subject=None))

    assert str(refused) == "data.new_id: must be a non-empty id without spaces, ':' or '/'"


def test_a_plain_copy_id_decodes() -> None:
    data = {"sequence_id": "welcome", "new_id": "welcome-é-2"}

    event = decode_event(raw_event("sequence.copy_requested", data, subject=None))

    assert event.data["new_id"] == "welcome-é-2"


@pytest.mark.parametrize(
    ("event_type", "data", "field", "reason"),
    [
        (
            "contact.created",
            {"contact_id": "c-1", "phone": "7205550142"},
            "data.phone",
            "must match E.164 (+ and up to 15 digits)",
        ),
        (
            "contact.created",
            {"contact_id": "c-1", "phone": "+1720555014212345"},
            "data.phone",
            "must match E.164 (+ and up to 15 digits)",
        ),
        (
            "contact.created",
            {"contact_id": "c-1", "phone": "+1\u0662\u0663\u0664"},  # Arabic-Indic digits
            "data.phone",
            "must match E.164 (+ and up to 15 digits)",
        ),
        (
            "contact.created",
            {"contact_id": "c-1", "tags": ["a", "b", 3]},
            "data.tags[2]",
            "must be a string",
        ),
        (
            "contact.created",
            {"contact_id": "c-1", "timezone": "Mars/Olympus_Mons"},
            "data.timezone",
            "unknown IANA time zone 'Mars/Olympus_Mons'",
        ),
        (
            "contact.updated",
            {"contact_id": "c-1", "timezone": "localtime"},
            "data.timezone",
            "unknown IANA time zone 'localtime'",
        ),
        *(
            (
                "contact.updated",
                {"contact_id": "c-1", "timezone": copy},
                "data.timezone",
                f"unknown IANA time zone {copy!r}",
            )
            # a system's copies beside the database: leap-second clocks 27 s apart, etc.
            for copy in ("right/UTC", "posix/America/New_York", "posixrules")
        ),
        (
            "contact.updated",
            {"contact_id": "c-1", "timezone": "America"},
            "data.timezone",
            "unknown IANA time zone 'America'",
        ),
        *(
            (kind, {"contact_id": "c-1", "email": email}, "data.email", checking.ADDRESS_REASON)
            for kind, email in [
                ("contact.created", "not an email"),
                ("contact.updated", "a@x.com\r\nBcc: b@y.com"),
                ("contact.created", "a@x.com, b@y.com"),
                ("contact.created", "Ann <a@x.com>"),
                ("contact.updated", "a@b@c"),
            ]
        ),
        ("contact.created", {"contact_id": ""}, "data.contact_id", "must not be empty"),
        (
            "contact.dnc_changed",
            {"contact_id": "c-1", "dnc": "yes"},
            "data.dnc",
            "must be a boolean",
        ),
        (
            "contact.opted_in",
            {"contact_id": "c-1", "channel": "fax"},
            "data.channel",
            "must be one of sms, email, all (or null)",
        ),
        (
            "call.completed",
            {**SAMPLES["call.completed"], "talk_time": -1},
            "data.talk_time",
            "must be at least 0",
        ),
        (
            "call.completed",
            {**SAMPLES["call.completed"], "direction": "sideways"},
            "data.direction",
            "must be one of inbound, outbound",
        ),
        (
            "appointment.changed",
            {**SAMPLES["appointment.changed"], "status": "missed"},
            "data.status",
            "must be one of scheduled, shown, canceled",
        ),
        (
            "enrollment.requested",
            {"sequence_id": "welcome"},
            "data",
            "needs one of contact_ids, tag, line_id, contact_group",
        ),
        (
            "enrollment.requested",
            {"sequence_id": "welcome", "contact_ids": []},
            "data.contact_ids",
            "must not be empty",
        ),
        (
            "enrollment.requested",
            {"sequence_id": "welcome", "contact_group": ["c-1", {"tag": "a", "contact_id": "c"}]},
            "data.contact_group[1]",
            "must be a contact id or an object with exactly one of tag, line_id, contact_id",
        ),
        (
            "step.deferred",
            {**SAMPLES["step.deferred"], "to": "tomorrow"},
            "data.to",
            "must be an RFC 3339 date-time such as 2027-07-02T20:30:00Z",
        ),
        (
            "step.skipped",
            {**SAMPLES["step.skipped"], "reason": "bored"},
            "data.reason",
            "must be one of dnc, opted_out, missing_phone, missing_email, outside_us_canada, "
            "missing_owner, removed",
        ),
        (
            "dialer.key_pressed",
            {**SAMPLES["dialer.key_pressed"], "digit": "12"},
            "data.digit",
            "must be one key: 0-9, * or #",
        ),
        (
            "sequence.applied",
            {**DEFINITION, "sequences": [{"id": "w", "name": "W", "steps": [{"id": "s"}]}]},
            "data.sequences[0].steps[0].type",
            "is required",
        ),
        (
            "sequence.applied",
            {**DEFINITION, "account": {**DEFINITION["account"], "timezone": "Nowhere/Land"}},
            "data.account.timezone",
            "unknown IANA time zone 'Nowhere/Land'",
        ),
    ],
)
def test_bad_data_is_refused_naming_the_field(
    event_type: str, data: dict[str, Any], field: str, reason: str
) -> None:
    refused = rejection(raw_event(event_type, data))

    assert (refused.field, refused.reason) == (field, reason)


# Every field of contact.created / contact.updated that the engine reads has a type: a
# string "false" would otherwise be read as bool("false"), that is True.
CONTACT_FIELDS_OF_THE_WRONG_TYPE = [
    ("dnc", "false", "must be a boolean or null"),
    ("dnc", 0, "must be a boolean or null"),
    ("disposition", {"x": 1}, "must be a string or null"),
    ("disposition", "", "must not be empty"),
    ("first_name", 7, "must be a string or null"),
    ("last_name", ["Ortiz"], "must be a string or null"),
    ("email", True, "must be a string or null"),
    ("state", 5, "must be a string or null"),
    ("lead_source", {"web": 1}, "must be a string or null"),
    ("owner_id", 7, "must be a string or null"),
    ("line_id", False, "must be a string or null"),
    ("tracking_number", 17205550100, "must be a string or null"),
    ("timezone", 1, "must be a string or null"),
    ("phone", 17205550142, "must be a string or null"),
    ("tags", "hot", "must be an array or null"),
]


@pytest.mark.parametrize("event_type", ["contact.created", "contact.updated"])
@pytest.mark.parametrize(("field", "value", "reason"), CONTACT_FIELDS_OF_THE_WRONG_TYPE)
def test_each_contact_field_the_engine_reads_is_refused_with_the_wrong_type(
    event_type: str, field: str, value: object, reason: str
) -> None:
    data = {"contact_id": "c-1", field: value}

    refused = rejection(raw_event(event_type, data))

    assert (refused.field, refused.reason) == (f"data.{field}", reason)


@pytest.mark.parametrize("event_type", ["contact.created", "contact.updated"])
@pytest.mark.parametrize(
    "data",
    [
        {"contact_id": "c-1", "dnc": False, "disposition": "interested"},
        {"contact_id": "c-1", "dnc": True, "disposition": None},
        {"contact_id": "c-1", "dnc": None},
        {"contact_id": "c-1", "tags": None},  # a CRM's "no tags": not a lost contact
        {"contact_id": "c-1", "crm_score": {"any": "shape"}},
    ],
)
def test_contact_fields_of_the_right_type_decode(event_type: str, data: dict[str, Any]) -> None:
    event = decode_event(raw_event(event_type, data))

    assert event.data == data


@pytest.mark.parametrize(
    ("event_type", "data", "decoded"),
    [
        (
            "call.completed",
            {"talk_time": None, "wait_time": None, "duration": None, "manual": None},
            {"talk_time": None, "wait_time": None, "duration": None, "manual": None},
        ),
        # v1 of an opt-out read null as every channel, as a missing one; v2 says "all".
        ("contact.opted_out", {"channel": None}, {"channel": "all"}),
        ("contact.opted_in", {"channel": None}, {"channel": None}),
    ],
)
def test_an_optional_upstream_field_may_be_null(
    event_type: str, data: dict[str, Any], decoded: dict[str, Any]
) -> None:
    # As for the contact fields: null is how many producers write "not known".
    event = decode_event(raw_event(event_type, {**SAMPLES[event_type], **data}))

    assert {key: event.data[key] for key in decoded} == decoded


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"talk_time": "60"}, "must be a number or null"),
        ({"manual": "yes"}, "must be a boolean or null"),
    ],
)
def test_a_null_allowed_field_still_refuses_the_wrong_type(
    data: dict[str, Any], reason: str
) -> None:
    refused = rejection(raw_event("call.completed", {**SAMPLES["call.completed"], **data}))

    assert (refused.field, refused.reason) == (f"data.{next(iter(data))}", reason)


# --- times the engine can compute with


OUT_OF_RANGE = "must be between 1900-01-01T00:00:00Z and 9000-12-31T23:59:59Z"


@pytest.mark.parametrize(
    "time",
    [
        "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
        "9999-12-31T23:59:59-01:00",  # after year 9999 in UTC
        "9999-12-31T23:59:59Z",  # a timer a minute later would not exist
        "9001-01-01T00:00:00Z",
        "9000-12-31T23:30:00-01:00",
        "1899-12-31T23:59:59Z",
        "1900-01-01T00:30:00+01:00",
        "0001-01-01T00:00:00Z",
    ],
)
def test_a_time_outside_the_engines_range_is_refused(time: str) -> None:
    refused = rejection(raw_event("contact.tag_added", time=time))

    assert (refused.field, refused.reason) == ("time", OUT_OF_RANGE)


@pytest.mark.parametrize(
    ("time", "utc"),
    [
        ("1900-01-01T00:00:00Z", datetime(1900, 1, 1, tzinfo=UTC)),
        ("1900-01-01T01:00:00+01:00", datetime(1900, 1, 1, tzinfo=UTC)),
        ("9000-12-31T23:59:59.999999Z", datetime(9000, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
        ("9000-12-31T22:59:59-01:00", datetime(9000, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ],
)
def test_a_time_at_the_edges_of_the_range_is_accepted(time: str, utc: datetime) -> None:
    event = decode_event(raw_event("contact.tag_added", time=time))

    assert event.time == utc


def test_extra_data_fields_are_kept_for_forward_compatibility() -> None:
    data = {"contact_id": "c-1", "tag": "hot", "sequence_id": "welcome", "step_id": "s4"}

    event = decode_event(raw_event("contact.tag_added", data, source="dripstream"))

    assert event.data == data


def test_a_published_definition_comes_out_with_its_defaults() -> None:
    bare = {"account": DEFINITION["account"], "sequences": [{"id": "w", "name": "W"}]}

    event = decode_event(raw_event("sequence.applied", bare, subject="sequence:w"))

    assert event.data["sequences"][0]["process_on"] == "business_days"
    assert event.data["sequences"][0]["steps"] == []


def test_the_rejection_survives_pickling_for_process_pools() -> None:
    refused = rejection(raw_event("contact.tag_added", {"contact_id": "c-1"}))

    copy = pickle.loads(pickle.dumps(refused))

    assert (copy.field, copy.reason, str(copy)) == (refused.field, refused.reason, str(refused))


# --- properties


# Any text but NUL, which is refused (test_a_nul_character_anywhere_is_refused_naming_where).
ids = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=30,
)


@given(
    contact_id=ids,
    tag=ids,
    removed=st.booleans(),
    moment=st.datetimes(
        # The range the engine accepts (schemas.envelope.EARLIEST_TIME / LATEST_TIME).
        min_value=datetime(1900, 1, 1),
        max_value=datetime(9000, 12, 31, 23, 59, 59, 999999),
        timezones=st.just(UTC),
    ),
    extra=st.dictionaries(st.from_regex(r"x[a-z0-9]{1,10}", fullmatch=True), ids, max_size=3),
)
def test_any_valid_tag_event_round_trips(
    contact_id: str, tag: str, removed: bool, moment: datetime, extra: dict[str, str]
) -> None:
    event = CloudEvent(
        id="e-1",
        source="crm",
        type="contact.tag_removed" if removed else "contact.tag_added",
        time=moment,
        subject=contact_id,
        data={"contact_id": contact_id, "tag": tag},
        extensions=extra,
    )

    assert decode_event(encode_event(event)) == event


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@given(event_type=st.sampled_from(ALL_TYPES), data=json_values, subject=st.none() | st.text())
def test_any_json_either_decodes_or_is_rejected_with_a_field(
    event_type: str, data: Any, subject: str | None
) -> None:
    raw = raw_event(event_type, data, subject=subject)  # data None: the type's sample

    result = outcome(raw)

    if isinstance(result, EventRejected):
        assert result.field == "subject" or result.field.startswith("data")
    else:
        assert result.type == event_type


@given(raw=st.binary(max_size=200))
def test_any_bytes_either_decode_or_are_rejected(raw: bytes) -> None:
    result = outcome(raw)

    assert isinstance(result, CloudEvent) or result.reason


usual_or_odd = (
    st.sampled_from(["1.0", "1", "c-1", "application/json"])
    | st.none()
    | (st.text(max_size=4) | st.integers() | st.dictionaries(st.text(max_size=2), st.none()))
)
envelope_keys = st.sampled_from(sorted(validation._ENVELOPE_KEYS | {"dataschema"}))


@given(
    base=st.fixed_dictionaries(
        {},
        optional={
            "dataversion": st.sampled_from(["1", "2", "01", "1\n", "123456789", "1234567890"]),
            "datacontenttype": st.sampled_from(
                [
                    "application/json",
                    "application/json; charset=utf-8",
                    "application/json;\n",
                    "text/plain",
                    "application/jsonx",
                    "",
                ]
            ),
            "dataschema": st.sampled_from(["urn:x", ""]),
        },
    ),
    changes=st.dictionaries(envelope_keys, usual_or_odd, max_size=2),
)
def test_the_quick_envelope_check_never_accepts_what_the_schema_refuses(
    base: dict[str, Any], changes: dict[str, Any]
) -> None:
    envelope = {**orjson.loads(raw_event("contact.tag_added")), **base, **changes}

    quick = validation._envelope_is_plain(envelope)

    if quick:
        assert checking.compiled(validation.ENVELOPE_SCHEMA, formats=False)(envelope) is envelope


def test_an_offset_of_24_hours_is_named_in_plain_words() -> None:
    refused = rejection(raw_event("contact.tag_added", time="2028-03-02T22:42:00+24:00"))

    assert refused.field == "time"
    assert refused.reason.endswith("its UTC offset must lie between -23:59 and +23:59")
    assert "timedelta" not in refused.reason


@pytest.mark.parametrize("offset", ["+05:60", "+05:99", "-00:75"])
def test_an_offset_of_60_minutes_or_more_is_refused_not_read_as_the_next_hour(
    offset: str,
) -> None:
    refused = rejection(raw_event("contact.tag_added", time=f"2028-03-02T22:42:00{offset}"))

    assert refused.field == "time"
    assert refused.reason.endswith("its UTC offset must lie between -23:59 and +23:59")


@pytest.mark.parametrize(
    ("before", "after", "key"),
    [
        (b'"id":"e-1",', b'"id":"e-1","id":"e-2",', "id"),
        (b'"tag":"hot"', b'"tag":"hot","tag":"cold"', "tag"),
        (b'"tag":"hot"', b'"tag" : "hot", "tag" :"cold"', "tag"),
        (b'"tag":"hot"', b'"tag":"hot","x":{"a":1,"a":2}', "a"),
        (b'"tag":"hot"', b'"tag":"hot","tag"\n:"cold"', "tag"),
        (b'"tag":"hot"', b'"tag":"hot","tag"\t :"cold"', "tag"),
        (b'"tag":"hot"', b'"tag":"hot","tag"   :"cold"', "tag"),
    ],
)
def test_a_key_written_twice_in_one_object_is_refused_by_name(
    before: bytes, after: bytes, key: str
) -> None:
    raw = raw_event("contact.tag_added")
    assert before in raw

    refused = rejection(raw.replace(before, after))

    assert (refused.field, refused.reason) == (
        "event",
        f"the key {key!r} appears twice in one object",
    )


@pytest.mark.parametrize("tag", ['say ":" twice ":"', '":', "plain"])
def test_text_that_only_looks_like_more_keys_is_no_repeat(tag: str) -> None:
    event = decode_event(raw_event("contact.tag_added", {"contact_id": "c-1", "tag": tag}))

    assert event.data["tag"] == tag


@pytest.mark.parametrize("email", ["ann.o+tag@sub.example.co.uk", "ops@localhost", "", None])
def test_one_address_or_none_is_a_contacts_email(email: str | None) -> None:
    event = decode_event(raw_event("contact.updated", {"contact_id": "c-1", "email": email}))

    assert event.data["email"] == email


def test_data_nested_past_the_limit_is_refused_not_a_recursion_error() -> None:
    deep = b'{"a":' * 900 + b"1" + b"}" * 900
    raw = raw_event("contact.tag_added").replace(b'"tag":"hot"', b'"tag":"hot","x":' + deep)

    refused = rejection(raw)

    assert (refused.field, refused.reason) == ("data", checking.DEPTH_REASON)


def test_keys_repeated_only_across_objects_are_no_repeat() -> None:
    raw = raw_event("contact.tag_added", {"contact_id": "c-1", "tag": "t", "x": {"tag": 1}})

    assert decode_event(raw).data["tag"] == "t"


def test_bytes_that_are_not_utf8_are_named_as_such() -> None:
    raw = raw_event("contact.tag_added").replace(b'"hot"', b'"h\xffot"')

    refused = rejection(raw)

    assert refused.field == "event"
    assert "not valid UTF-8 (byte " in refused.reason
    assert "surrogates" not in refused.reason


@pytest.mark.parametrize(
    ("data", "written", "field"),
    [
        ({"contact_id": "c-1", "first_name": "?"}, b'"\\ud800x"', "data.first_name"),
        ({"contact_id": "c-1", "tags": ["ok", "?"]}, b'"\\udfff"', "data.tags[1]"),
        ({"contact_id": "c-1", "?": "v"}, b'"\\ud800k"', "data.\\ud800k"),
    ],
)
def test_a_lone_surrogate_escape_is_named_by_its_field(
    data: dict[str, Any], written: bytes, field: str
) -> None:
    # JSON Schema takes `\ud800` for a string like any other; orjson cannot read it
    raw = raw_event("contact.created", data).replace(b'"?"', written)

    refused = rejection(raw)

    assert (refused.field, refused.reason) == (field, checking.LONE_SURROGATE_REASON)


def _talk_time(written: bytes) -> bytes:
    return raw_event("call.completed").replace(b'"talk_time":75', b'"talk_time":' + written)


def test_a_number_beyond_a_double_is_named_by_its_field() -> None:
    refused = rejection(_talk_time(b"1e400"))

    assert (refused.field, refused.reason) == ("data.talk_time", checking.OVERFLOW_REASON)


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_stay_no_json(literal: bytes) -> None:
    refused = rejection(_talk_time(literal))

    assert refused.field == "event"
    assert refused.reason.startswith("not valid JSON: ")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be"])
def test_a_file_written_as_utf16_is_named_so_on_every_line(encoding: str) -> None:
    # what Windows PowerShell's `>` writes: its lines split at the newline's first byte
    text = (raw_event("contact.tag_added").decode() + "\n") * 2
    lines = text.encode(encoding).split(b"\n")
    for line in filter(None, lines):  # an empty line is passed over as blank
        assert rejection(line).reason == (
            "not valid JSON: not UTF-8: the text looks like UTF-16 (save the file as UTF-8)"
        ), line


def test_a_byte_order_mark_is_dropped_from_a_files_first_line_only() -> None:
    bom = validation.UTF8_BOM
    assert validation.without_bom(bom + b"{}", 1) == b"{}"
    assert validation.without_bom(bom + b"{}", 2) == bom + b"{}"


def test_a_published_definition_nested_too_deep_is_rejected_not_a_crash() -> None:
    envelope = raw_event("sequence.applied", {"sequences": [], "x": 0}, subject="sequences")
    deep = envelope.replace(b'"x":0', b'"x":' + b"[" * 1020 + b"]" * 1020)
    assert deep != envelope
    refused = rejection(deep)
    assert refused.field == "data"
    assert "nested more than 64 levels deep" in refused.reason


@pytest.mark.parametrize("event_type", ["sms.send", "enrollment.enrolled", "effect.failed"])
def test_an_output_taken_as_input_is_refused_as_one_before_its_fields_are_checked(
    event_type: str,
) -> None:
    # A forged command with half its fields: the reason says what it is, not what it lacks.
    raw = orjson.dumps(
        {
            "specversion": "1.0",
            "id": "x-1",
            "source": "crm",
            "type": event_type,
            "time": "2028-03-02T22:41:30Z",
            "subject": "c-1",
            "data": {"contact_id": "c-1"},
        }
    )
    with pytest.raises(EventRejected) as refused:
        decode_event(raw, as_input=True)
    assert refused.value.field == "type"
    assert refused.value.reason.endswith("not an input")
    with pytest.raises(EventRejected) as checked:
        decode_event(raw)  # read as an output (a projection's view): its fields are checked
    assert checked.value.field.startswith("data")


def test_a_field_named_with_control_characters_is_named_escaped() -> None:
    # A key holding a terminal's escape sequences, a line break or a bidi override, named
    # on stderr as it is, could clear the screen or forge a report line.
    key = "\x1b[2J\r\nline 9: fake\u202e"
    raw = raw_event("contact.tag_added", {"contact_id": "c-1", "tag": "hot", key: "a\u0000"})
    refused = rejection(raw)
    assert refused.field == "data.\\x1b[2J\\r\\nline 9: fake\\u202e"
    assert str(refused).isprintable()


# --- what PostgreSQL cannot hold, and the engine's own source


@pytest.mark.parametrize(
    ("envelope", "field"),
    [
        ({"id": "e-\u0000-1"}, "id"),
        ({"subject": "c-\u00001", "data": {"contact_id": "c-\u00001", "tag": "hot"}}, "subject"),
        ({"data": {"contact_id": "c-1", "tag": "h\u0000t"}}, "data.tag"),
        ({"traceparent": "\u0000"}, "traceparent"),
        ({"data": {"contact_id": "c-1", "tag": "hot", "note\u0000": 1}}, "data.note\\u0000"),
    ],
)
def test_a_nul_character_anywhere_is_refused_naming_where(
    envelope: dict[str, Any], field: str
) -> None:
    # given an event with U+0000 in one string or key (JSON carries it as the \u0000 escape)
    raw = raw_event("contact.tag_added", **envelope)
    assert b"\\u0000" in raw
    # then it is refused, naming that string, before any write could fail on it, as bytes
    # and as text
    for as_given in (raw, raw.decode()):
        refused = rejection(as_given)
        assert (refused.field, refused.reason) == (field, checking.NUL_REASON)


@pytest.mark.parametrize(
    ("raw", "field", "value"),
    [
        (
            raw_event("contact.tag_added", {"contact_id": "c-1", "tag": "h\u0000t"}),
            "tag",
            "h\u0000t",
        ),
        (
            raw_event("contact.created", {"contact_id": "c-1", "email": "Ann <ann@x.com>"}),
            "email",
            "Ann <ann@x.com>",
        ),
        (
            raw_event("contact.tag_added").replace(b'"tag":"hot"', b'"tag":"h","tag":"hot"'),
            "tag",
            "hot",
        ),
    ],
)
def test_an_input_stored_before_a_check_of_today_is_still_replayed(
    raw: bytes, field: str, value: str
) -> None:
    with pytest.raises(EventRejected):
        decode_event(raw)

    assert validation.decode_stored(raw).data[field] == value


def test_a_stored_time_with_an_offset_of_60_minutes_is_read_as_when_it_was_decided() -> None:
    raw = raw_event("contact.tag_added", time="2028-03-02T22:42:00+05:60")

    event = validation.decode_stored(raw)

    assert event.time == datetime(2028, 3, 2, 16, 42, tzinfo=UTC)
    assert event.data == SAMPLES["contact.tag_added"]


def test_a_stored_definition_refused_by_a_check_of_today_is_still_replayed() -> None:
    document = {
        **DEFINITION,
        "account": {**DEFINITION["account"], "users": {"u-1": {"name": "A", "email": "nope"}}},
    }
    raw = raw_event("sequence.applied", document, subject=None)
    with pytest.raises(EventRejected):
        decode_event(raw)

    assert validation.decode_stored(raw).data["account"]["users"]["u-1"]["email"] == "nope"


def test_a_backslash_before_u0000_is_text_not_a_nul() -> None:
    # "\\u0000" in JSON is a backslash and five characters: no NUL, nothing to refuse
    raw = raw_event("contact.tag_added", {"contact_id": "c-1", "tag": "a\\u0000b"})
    assert b"\\\\u0000" in raw
    assert decode_event(raw).data["tag"] == "a\\u0000b"


@pytest.mark.parametrize(
    "event_type", ["message.received", "call.completed", "enrollment.requested"]
)
def test_an_input_from_upstream_under_the_engines_own_source_is_refused(event_type: str) -> None:
    # given a fact the engine never writes back, sent with source "dripstream": the engine
    # passes over its own changes, so taking it would drop it without a word
    raw = raw_event(event_type, source="dripstream")
    with pytest.raises(EventRejected) as refused:
        decode_event(raw, as_input=True)
    assert refused.value.field == "source"
    assert f"a {event_type} from upstream needs a source of its own" in refused.value.reason


def test_the_engines_own_contact_change_still_decodes_as_input() -> None:
    # a dump of `contacts` holds the engine's own changes: replay and the worker pass over them
    event = decode_event(raw_event("contact.tag_added", source="dripstream"), as_input=True)
    assert event.source == "dripstream"


# --- nesting the JSON writer could not write back


@pytest.mark.parametrize("depth", [64, 300, 1000])
def test_data_nested_past_the_limit_is_refused_as_bytes_and_as_text(depth: int) -> None:
    # given a tag event whose data holds a value nested `depth` levels (1,000 still parses;
    # orjson writes 255 at most, and the engine fingerprints data by writing it)
    nested = "[" * depth + "]" * depth
    raw = raw_event("contact.tag_added", {"contact_id": "c-1", "tag": "hot"}).replace(
        b'"tag":"hot"', b'"tag":"hot","extra":' + nested.encode()
    )
    for as_given in (raw, raw.decode()):
        refused = rejection(as_given)
        assert (refused.field, refused.reason) == ("data", checking.DEPTH_REASON)


def test_data_nested_to_the_limit_and_wide_is_taken() -> None:
    # 63 levels under `data` (64 with it), and far more than 64 brackets side by side
    extra = b"[" * 62 + b"]" * 62 + b"," + b",".join([b"[]"] * 500)
    raw = raw_event("contact.tag_added", {"contact_id": "c-1", "tag": "hot"}).replace(
        b'"tag":"hot"', b'"tag":"hot","extra":[' + extra + b"]"
    )
    assert decode_event(raw, as_input=True).data["tag"] == "hot"


@pytest.mark.parametrize("time", ["2027-06-30T23:59:60Z", "2027-06-30T18:59:60.5-05:00"])
def test_a_leap_second_is_refused_saying_so(time: str) -> None:
    # RFC 3339 allows second 60; "second must be in 0..59" would contradict the reason's
    # own "must be an RFC 3339 date-time"
    refused = rejection(
        raw_event("contact.tag_added", {"contact_id": "c-1", "tag": "x"}, time=time)
    )
    assert refused.field == "time"
    assert refused.reason.startswith("is a leap second (:60), which RFC 3339 allows")
