"""The Sequence History report: given output events, then these rows, filters and totals."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from projections.history import (
    _NUMBER_BITS,
    EVENT_KINDS,
    HistoryQuery,
    HistoryReport,
    history_rank,
)
from tests.projections.helpers import Stream

T0 = "2028-03-02T22:41:00Z"
T1 = "2028-03-02T22:41:02Z"
MAYA = {"name": "Maya Ortiz", "phone": "+17205550142", "email": "maya@example.com"}
RAVI = {"name": "Ravi Rao", "phone": "+17205550143", "email": "ravi@example.com"}


def report_of(stream: Stream) -> HistoryReport:
    report = HistoryReport()
    for event in stream.events:
        report.apply(event)
    return report


def query(report: HistoryReport, sequence_id: str = "w", **options: Any) -> list[tuple[str, ...]]:
    page = report.query(HistoryQuery(sequence_id, **options))
    assert page is not None
    return [(line.contact_id or "-", line.action, line.event) for line in page.rows]


def total(report: HistoryReport, sequence_id: str = "w", **options: Any) -> int:
    page = report.query(HistoryQuery(sequence_id, **options))
    assert page is not None
    return page.total


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_given_an_enrollment_then_its_rows_newest_first_with_the_contact() -> None:
    given = Stream()
    given.defined("w")
    given.enrolled("w", "c-100", "2028-03-02T22:41:00Z", via="contact_tagged", **MAYA)
    given.step("scheduled", "w", "c-100", "s1", "2028-03-02T22:41:00Z", due_at=T0)
    given.step("executed", "w", "c-100", "s1", "2028-03-02T22:41:00Z", effect_id="fx:1")
    given.scoped("sms.send", "w", "c-100", "2028-03-02T22:41:00Z", step_id="s1", to="+1")
    given.step("deferred", "w", "c-100", "s2", "2028-03-02T22:41:00Z", reason="outside_hours")
    given.disenrolled("w", "c-100", "2028-03-02T23:10:00Z", reason="responded")

    page = report_of(given).query(HistoryQuery("w"))

    assert page is not None
    assert page.total == 6
    assert [line.to_json() for line in page.rows[:2]] == [
        {
            "contact": "Maya Ortiz (c-100) +17205550142",
            "contact_id": "c-100",
            "contact_name": "Maya Ortiz",
            "contact_phone": "+17205550142",
            "action": "Disenrolled: responded",
            "event": "enrollment.disenrolled",
            "type": "enrollment.disenrolled",
            "time": "2028-03-02T23:10:00Z",
        },
        {
            "contact": "Maya Ortiz (c-100) +17205550142",
            "contact_id": "c-100",
            "contact_name": "Maya Ortiz",
            "contact_phone": "+17205550142",
            "action": "Step s2 deferred (outside_hours)",
            "event": "step.deferred",
            "type": "step.deferred",
            "time": "2028-03-02T22:41:00Z",
        },
    ]
    # Same time: the later event in the stream comes first.
    assert [line.action for line in page.rows[1:]] == [
        "Step s2 deferred (outside_hours)",
        "SMS sent",
        "Step s1 executed",
        "Step s1 scheduled",
        "Enrolled",
    ]
    assert page.rows[-1].event == "contact_tagged"


@pytest.mark.parametrize(
    ("kind", "data", "action"),
    [
        ("enrollment.rejected", {"reason": "already_enrolled"}, "Rejected: already_enrolled"),
        ("enrollment.completed", {}, "Completed"),
        ("step.skipped", {"step_id": "s3", "reason": "dnc"}, "Step s3 skipped (dnc)"),
        ("mms.send", {"step_id": "s1"}, "MMS sent"),
        ("email.send", {"step_id": "s1"}, "Email sent"),
        ("call.dial", {"step_id": "s1", "mode": "progressive"}, "Call dialed (progressive)"),
        ("voicemail.drop", {"step_id": "s1"}, "Voicemail dropped"),
        ("webhook.post", {"step_id": "s1"}, "Webhook posted"),
        ("notify.sms", {"step_id": "s1"}, "SMS notification sent"),
        ("notify.email", {"step_id": "s1"}, "Email notification sent"),
        ("contact.tag_added", {"tag": "hot"}, "Tag added: hot"),
        ("contact.tag_removed", {"tag": "hot"}, "Tag removed: hot"),
        ("contact.disposition_changed", {"disposition": "won"}, "Disposition changed: won"),
        ("contact.dnc_changed", {"dnc": True}, "Marked DNC"),
        ("contact.dnc_changed", {"dnc": False}, "DNC removed"),
        ("contact.updated", {"owner_id": "u-7"}, "Owner changed: u-7"),
        (
            "contact.updated",
            {"line_id": "l-2", "lead_source": "web"},
            "Line added: l-2; Lead source changed: web",
        ),
        ("contact.created", {"first_name": "Ann"}, "Contact created"),
        ("power_dialer.added", {"step_id": "s1"}, "Added to power dialer"),
        ("power_dialer.removed", {"step_id": "s1"}, "Removed from power dialer"),
    ],
)
def test_each_output_type_reads_as_a_short_action(
    kind: str, data: dict[str, Any], action: str
) -> None:
    given = Stream()
    given.defined("w")
    given.scoped(kind, "w", "c-1", T0, **data)

    assert query(report_of(given)) == [("c-1", action, kind)]


OUTCOMES = [
    (
        "effect.failed",
        {"effect_type": "sms.send", "reason": "data.from_number: is required", "code": "x"},
        "SMS failed: data.from_number: is required",
    ),
    (
        "effect.failed",
        {"effect_type": "webhook.post", "reason": "HTTP 500"},
        "Webhook failed: HTTP 500",
    ),
    (
        "effect.unknown",
        {"effect_type": "email.send", "reason": "no answer in 10 s"},
        "Email outcome unknown: no answer in 10 s",
    ),
    ("effect.unknown", {"reason": "abandoned"}, "Effect outcome unknown: abandoned"),
    (
        "effect.status_changed",
        {"effect_type": "sms.send", "status": "undelivered"},
        "SMS undelivered",
    ),
    (
        "effect.status_changed",
        {"effect_type": "call.dial", "status": "no-answer"},
        "Call not answered",
    ),
    ("effect.status_changed", {"effect_type": "email.send", "status": "bounce"}, "Email bounced"),
]


@pytest.mark.parametrize(("kind", "data", "action"), OUTCOMES)
def test_a_send_the_provider_did_not_carry_out_reads_as_its_own_row(
    kind: str, data: dict[str, Any], action: str
) -> None:
    # The command's row says "SMS sent" when the engine decided it; what the provider
    # answered comes later, from the effects processor, and is the row that says why not.
    given = Stream()
    given.defined("w")
    given.scoped("sms.send", "w", "c-1", T0, step_id="s1")
    given.scoped(kind, "w", "c-1", T1, effect_id="fx:1", **data)

    assert query(report_of(given)) == [("c-1", action, kind), ("c-1", "SMS sent", "sms.send")]
    assert query(report_of(given), kind="communication")[0] == ("c-1", action, kind)


@pytest.mark.parametrize(
    ("digit", "action", "row"),
    [
        ("1", "connect", "Call answered: pressed 1 (put through to an agent)"),
        ("2", "callback", "Call answered: pressed 2 (asked to be called back)"),
        ("9", "opt_out", "Call answered: pressed 9 (asked not to be contacted again)"),
    ],
)
def test_a_key_pressed_on_a_dialer_call_is_a_communication_row(
    digit: str, action: str, row: str
) -> None:
    # given a progressive call, and the contact's key on it (from the effects processor)
    given = Stream()
    given.defined("w")
    given.scoped("call.dial", "w", "c-1", T0, step_id="s1", mode="progressive")
    given.scoped(
        "dialer.key_pressed", "w", "c-1", T1, effect_id="fx:1", effect_type="call.dial",
        digit=digit, action=action, call_sid="CA1",
    )  # fmt: skip
    # then the report says what the contact chose, under communication
    key_row = ("c-1", row, "dialer.key_pressed")
    assert query(report_of(given)) == [key_row, ("c-1", "Call dialed (progressive)", "call.dial")]
    assert query(report_of(given), kind="communication")[0] == key_row


def test_an_agents_key_on_a_preview_call_does_not_read_as_the_contact_answering() -> None:
    given = Stream()
    given.defined("w")
    given.scoped(
        "dialer.key_pressed", "w", "c-1", T1, effect_id="fx:1", effect_type="call.dial",
        digit="1", action="connect", call_sid="CA-agent", mode="preview",
    )  # fmt: skip
    [(_, action, _)] = query(report_of(given))
    assert action == "Agent took the call: pressed 1 (put through to the contact)"


@pytest.mark.parametrize("status", ["queued", "sent", "delivered", "opened", "completed"])
def test_a_send_that_went_through_adds_no_row(status: str) -> None:
    given = Stream()
    given.defined("w")
    given.scoped("sms.send", "w", "c-1", T0, step_id="s1")
    given.scoped("effect.sent", "w", "c-1", T1, effect_id="fx:1", provider="twilio")
    given.scoped(
        "effect.status_changed",
        "w",
        "c-1",
        T1,
        effect_id="fx:1",
        status=status,
    )

    assert query(report_of(given)) == [("c-1", "SMS sent", "sms.send")]


def test_only_this_sequences_engine_outputs_make_rows() -> None:
    given = Stream()
    given.defined("w")
    given.defined("other")
    given.scoped("contact.tag_added", "w", "c-1", T0, tag="hot", source="crm")
    given.scoped("contact.tag_added", "w", "c-1", T0, tag="warm")
    given.scoped("sms.send", "other", "c-1", T0, step_id="s1")
    given.scoped("effect.sent", "w", "c-1", T0, effect_id="fx:1")
    given.scoped("something.new", "w", "c-1", T0)

    assert query(report_of(given)) == [("c-1", "Tag added: warm", "contact.tag_added")]


def test_a_rejected_lead_belongs_to_the_sequence_of_its_intake_address() -> None:
    given = Stream()
    given.defined("w", intake_address="leads-1@intake.example.com")
    given.add("lead.rejected", T0, to="leads-1@intake.example.com", reason="no phone or email")

    assert query(report_of(given), kind="creation") == [
        ("-", "Lead rejected: no phone or email", "lead.rejected")
    ]


def test_a_contact_only_ever_rejected_is_named_and_found_by_phone() -> None:
    given = Stream()
    given.defined("w")
    given.add(
        "enrollment.rejected",
        T0,
        sequence_id="w",
        contact_id="c-8",
        reason="opted_out",
        via="contact_tagged",
        contact_name="Ravi Rao",
        contact_phone="+17205550143",
        contact_email=None,
    )
    page = report_of(given).query(HistoryQuery("w", search="720-555-0143"))
    assert page is not None
    assert [line.contact for line in page.rows] == ["Ravi Rao (c-8) +17205550143"]


def test_each_row_names_its_contact_as_the_report_shows_it() -> None:
    given = Stream()
    given.defined("w", intake_address="leads-1@intake.example.com")
    given.enrolled("w", "c-1", T0, **MAYA)
    given.enrolled("w", "c-2", T0, phone="+17205550143")
    given.enrolled("w", "c-3", T0)
    given.add("lead.rejected", T0, to="leads-1@intake.example.com", reason="no phone or email")

    page = report_of(given).query(HistoryQuery("w"))

    assert page is not None
    assert [(row["contact_id"], row["contact"]) for row in page.to_json()["rows"]] == [
        (None, None),
        ("c-3", "c-3"),
        ("c-2", "c-2 +17205550143"),
        ("c-1", "Maya Ortiz (c-1) +17205550142"),
    ]


def filters_stream() -> Stream:
    given = Stream()
    given.defined("w", intake_address="in@x.example")
    given.enrolled("w", "c-1", T0)
    given.add("enrollment.rejected", T0, sequence_id="w", contact_id="c-2", reason="opted_out")
    given.step("scheduled", "w", "c-1", "s1", T0, due_at=T0)
    given.step("executed", "w", "c-1", "s1", T0)
    given.scoped("sms.send", "w", "c-1", T0, step_id="s1")
    given.scoped("webhook.post", "w", "c-1", T0, step_id="s2")
    given.scoped("notify.email", "w", "c-1", T0, step_id="s3")
    given.scoped("contact.tag_added", "w", "c-1", T0, tag="hot")
    given.scoped("power_dialer.added", "w", "c-1", T0, step_id="s4")
    given.scoped("contact.created", "w", "c-3", T0)
    given.add("lead.rejected", T0, to="in@x.example", reason="unparseable")
    given.completed("w", "c-1", T0)
    given.disenrolled("w", "c-2", T0)
    given.scoped("effect.failed", "w", "c-1", T0, effect_id="fx:1", reason="refused")
    return given


@pytest.mark.parametrize(
    ("kind", "types"),
    [
        ("enrollment", ["enrollment.rejected", "enrollment.enrolled"]),
        ("disenrollment", ["enrollment.disenrolled", "enrollment.completed"]),
        ("property_update", ["power_dialer.added", "contact.tag_added"]),
        ("communication", ["effect.failed", "notify.email", "sms.send"]),
        ("creation", ["lead.rejected", "contact.created"]),
        ("step", ["webhook.post", "step.executed", "step.scheduled"]),
        ("sms.send", ["sms.send"]),
    ],
)
def test_the_type_filter_keeps_its_kind_of_rows(kind: str, types: list[str]) -> None:
    report = report_of(filters_stream())

    page = report.query(HistoryQuery("w", kind=kind))

    assert page is not None
    assert [line.type for line in page.rows] == types
    assert page.total == len(types)


def test_every_kind_together_covers_every_row() -> None:
    report = report_of(filters_stream())
    assert sum(total(report, kind=kind) for kind in EVENT_KINDS) == total(report) == 14


def test_trigger_and_action_split_the_rows_between_them() -> None:
    # The seed: "View trigger and action events within the sequence, including contact
    # enrollment, disenrollment, property updates, communication with contacts, and
    # information creation."
    report = report_of(filters_stream())
    kinds = {kind: total(report, kind=kind) for kind in EVENT_KINDS}
    assert total(report, kind="trigger") == kinds["enrollment"] + kinds["disenrollment"] == 4
    assert total(report, kind="action") == total(report) - 4 == 10
    page = report.query(HistoryQuery("w", kind="trigger"))
    assert page is not None
    assert {line.type for line in page.rows} == {
        "enrollment.enrolled",
        "enrollment.rejected",
        "enrollment.disenrolled",
        "enrollment.completed",
    }


def test_an_unknown_type_filter_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown event type 'sms'"):
        HistoryQuery("w", kind="sms")


def search_stream() -> Stream:
    given = Stream()
    given.defined("w")
    given.enrolled("w", "c-100", T0, **MAYA)
    given.enrolled("w", "c-101", T0, **RAVI)
    given.scoped("contact.created", "w", "c-7", T0, first_name="Lena", phone="+13035550199")
    given.scoped("contact.updated", "w", "c-7", T0, last_name="Park", email="LENA@corp.example")
    return given


@pytest.mark.parametrize(
    ("text", "contacts"),
    [
        ("maya", {"c-100"}),
        ("ORTIZ", {"c-100"}),
        ("c-101", {"c-101"}),
        ("c-7", {"c-7"}),  # an id with a digit is no phone number: "7" is in the others
        ("7205550142", {"c-100"}),
        ("(720) 555-0143", {"c-101"}),
        ("720-555", {"c-100", "c-101"}),
        ("+1303", {"c-7"}),
        ("lena park", {"c-7"}),
        ("corp.example", {"c-7"}),
        ("@example.com", {"c-100", "c-101"}),
        ("nobody", set()),
    ],
)
def test_search_matches_name_id_phone_digits_and_email(text: str, contacts: set[str]) -> None:
    report = report_of(search_stream())

    page = report.query(HistoryQuery("w", search=text))

    assert page is not None
    assert {line.contact_id for line in page.rows} == contacts


def test_a_contact_created_by_the_engine_names_its_rows() -> None:
    page = report_of(search_stream()).query(HistoryQuery("w", search="lena"))
    assert page is not None
    assert {(line.contact_name, line.contact_phone) for line in page.rows} == {
        ("Lena Park", "+13035550199")
    }


# --- timeframes ------------------------------------------------------------------------------

# Denver is UTC-7 in early March 2028: local midnight of 2 March is 07:00Z.
BEFORE_MIDNIGHT = "2028-03-02T06:59:59Z"  # 1 March, 23:59:59 local
AT_MIDNIGHT = "2028-03-02T07:00:00Z"  # 2 March, 00:00 local


def stream_at(*times: str, zone: str | None = "America/Denver") -> Stream:
    given = Stream()
    given.defined("w", account_timezone=zone)
    for n, moment in enumerate(times, start=1):
        given.scoped("sms.send", "w", f"c-{n}", moment, step_id="s1")
    return given


def contacts_in(report: HistoryReport, timeframe: str, now: str, **options: Any) -> list[str]:
    page = report.query(HistoryQuery("w", timeframe=timeframe, now=at(now), **options))
    assert page is not None
    return sorted(line.contact_id or "-" for line in page.rows)


def test_today_and_yesterday_split_at_local_midnight_of_the_account_zone() -> None:
    report = report_of(stream_at(BEFORE_MIDNIGHT, AT_MIDNIGHT, "2028-03-03T06:59:59Z"))
    now = "2028-03-02T20:00:00Z"  # 2 March, 13:00 local

    assert contacts_in(report, "today", now) == ["c-2", "c-3"]
    assert contacts_in(report, "yesterday", now) == ["c-1"]
    # In UTC all three instants but the last fall on 2 March.
    assert contacts_in(report, "today", now, timezone="UTC") == ["c-1", "c-2"]


def test_the_account_zone_defaults_to_utc() -> None:
    report = report_of(stream_at(BEFORE_MIDNIGHT, AT_MIDNIGHT, zone=None))
    assert contacts_in(report, "today", "2028-03-02T20:00:00Z") == ["c-1", "c-2"]


def test_last_7_days_are_the_7_local_days_ending_today() -> None:
    report = report_of(stream_at(BEFORE_MIDNIGHT, AT_MIDNIGHT, "2028-03-09T06:59:59Z"))
    now = "2028-03-08T23:00:00Z"  # 8 March, 16:00 local: the window is 2..8 March local

    assert contacts_in(report, "last_7_days", now) == ["c-2", "c-3"]
    assert contacts_in(report, "last_30_days", now) == ["c-1", "c-2", "c-3"]


def test_this_month_and_last_month_follow_local_month_boundaries() -> None:
    # Local: 29 Feb 23:59:59 (leap year), 1 Mar 00:00, 31 Jan 12:00.
    report = report_of(
        stream_at("2028-03-01T06:59:59Z", "2028-03-01T07:00:00Z", "2028-01-31T19:00:00Z")
    )
    now = "2028-03-15T12:00:00Z"

    assert contacts_in(report, "this_month", now) == ["c-2"]
    assert contacts_in(report, "last_month", now) == ["c-1"]
    assert contacts_in(report, "all_time", now) == ["c-1", "c-2", "c-3"]


def test_last_30_days_begin_at_local_midnight_29_days_before_today() -> None:
    report = report_of(stream_at(BEFORE_MIDNIGHT, AT_MIDNIGHT))
    now = "2028-03-31T18:00:00Z"  # 31 March, 12:00 local: the window is 2..31 March local

    assert contacts_in(report, "last_30_days", now) == ["c-2"]


def test_this_month_runs_to_the_months_end_past_now() -> None:
    report = report_of(stream_at("2028-03-20T12:00:00Z", "2028-04-01T12:00:00Z"))

    assert contacts_in(report, "this_month", "2028-03-15T12:00:00Z") == ["c-1"]


def test_last_month_in_january_is_the_december_before() -> None:
    report = report_of(
        stream_at("2027-12-15T12:00:00Z", "2027-11-30T12:00:00Z", "2028-01-02T12:00:00Z")
    )
    now = "2028-01-15T12:00:00Z"

    assert contacts_in(report, "last_month", now) == ["c-1"]
    assert contacts_in(report, "this_month", now) == ["c-3"]


def test_a_day_that_starts_in_a_dst_gap_starts_when_the_clocks_jump() -> None:
    # Santiago moved its clocks from 00:00 to 01:00 on 8 September 2024 (-04 to -03).
    report = report_of(
        stream_at("2024-09-08T03:59:59Z", "2024-09-08T04:00:00Z", zone="America/Santiago")
    )
    now = "2024-09-08T15:00:00Z"

    assert contacts_in(report, "today", now) == ["c-2"]
    assert contacts_in(report, "yesterday", now) == ["c-1"]


def test_without_now_timeframes_count_from_the_latest_event_in_the_stream() -> None:
    given = stream_at(BEFORE_MIDNIGHT, AT_MIDNIGHT)
    given.scoped("sms.send", "later", "c-9", "2028-03-05T12:00:00Z")  # another sequence's
    # A definition's time is when it was applied (on a live system, the day it ran): it
    # does not move the clock, or a history pushed through from another year had no today.
    given.defined("applied-live", "2031-06-01T09:00:00Z")
    report = report_of(given)

    page = report.query(HistoryQuery("w", timeframe="last_7_days"))
    today = report.query(HistoryQuery("w", timeframe="today"))

    assert page is not None
    assert today is not None
    assert page.total == 2
    assert today.total == 0


# --- pagination, unknown sequences, idempotence ----------------------------------------------


def test_pagination_pages_the_filtered_rows_and_total_counts_them_all() -> None:
    given = Stream()
    given.defined("w")
    for minute in range(10):
        given.scoped("sms.send", "w", f"c-{minute}", f"2028-03-02T10:{minute:02d}:00Z")
    given.scoped("email.send", "w", "c-x", "2028-03-02T11:00:00Z")
    report = report_of(given)

    page = report.query(HistoryQuery("w", kind="sms.send", limit=3, offset=2))
    beyond = report.query(HistoryQuery("w", kind="sms.send", limit=3, offset=20))

    assert page is not None
    assert beyond is not None
    assert page.total == beyond.total == 10
    assert [line.contact_id for line in page.rows] == ["c-7", "c-6", "c-5"]
    assert beyond.rows == ()


def test_an_unknown_sequence_has_no_report_and_a_known_one_an_empty_one() -> None:
    given = Stream()
    given.defined("w")
    given.scoped("sms.send", "undefined", "c-1", T0)
    report = report_of(given)

    assert report.query(HistoryQuery("nope")) is None
    assert total(report, "w") == 0
    assert total(report, "undefined") == 1


def test_a_deleted_sequence_keeps_its_history() -> None:
    given = Stream()
    given.defined("w")
    given.enrolled("w", "c-1", T0)
    given.deleted("w", "2028-03-03T00:00:00Z")

    assert total(report_of(given)) == 1


def test_feeding_the_same_events_twice_changes_nothing() -> None:
    given = filters_stream()
    report = report_of(given)
    before = report.query(HistoryQuery("w"))

    applied = [report.apply(event) for event in given.events]

    assert not any(applied)
    assert report.query(HistoryQuery("w")) == before


def test_the_same_id_from_another_source_is_another_event() -> None:
    given = Stream()
    given.defined("w")
    given.scoped("sms.send", "w", "c-1", T0, event_id="e-1")
    given.add(
        "contact.updated", T0, contact_id="c-1", first_name="Ann", event_id="e-1", source="crm"
    )

    page = report_of(given).query(HistoryQuery("w"))

    assert page is not None
    assert [(line.contact_name, line.action) for line in page.rows] == [("Ann", "SMS sent")]


def test_a_report_kept_for_one_sequence_gives_its_page_and_keeps_no_other_rows() -> None:
    given = Stream()
    given.defined("w")
    given.defined("v")
    for n in range(3):
        given.enrolled("w", f"c-{n}", T0, **MAYA)
        given.enrolled("v", f"c-{n}", T1, **RAVI)
    only = HistoryReport(only="w")
    for event in given.events:
        only.apply(event)

    whole = report_of(given).query(HistoryQuery("w", search="maya"))
    assert only.query(HistoryQuery("w", search="maya")) == whole
    assert only.knows("v")  # defined, so not "unknown", but its rows were not kept
    with pytest.raises(ValueError, match="keeps the rows of 'w' alone"):
        only.query(HistoryQuery("v"))


def test_an_event_id_ending_in_a_long_number_ranks_without_converting_it() -> None:
    # the rank reads the engine's `<cause>/<n>`; any other id, however long, hashes whole
    long_tail = "x/" + "9" * 5000
    rank = history_rank("crm", long_tail)
    assert rank % (1 << _NUMBER_BITS) == 0  # no number read from it
    assert rank != history_rank("crm", "x/9") - 9  # nor its cause taken to be "x"
    assert history_rank("dripstream", "c/2") == history_rank("dripstream", "c/1") + 1
