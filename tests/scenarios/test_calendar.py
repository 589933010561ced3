"""Open hours, processing days and holidays move due moments (CONTRACT.md §3 (a), (b))."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.scenarios.harness import Replay


@pytest.fixture(scope="module")
def hours(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("open_hours")


@pytest.fixture(scope="module")
def weekend(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("weekend")


@pytest.fixture(scope="module")
def thanksgiving(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("holiday_thanksgiving")


@pytest.fixture(scope="module")
def july4(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("holiday_july4_observed")


@pytest.fixture(scope="module")
def year_end(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("holiday_year_end")


@pytest.fixture(scope="module")
def holidays(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("holiday_list_only")


@pytest.mark.parametrize(
    ("contact", "tagged", "sent"),
    [
        ("c-early", "2027-07-06T11:00:00Z", "2027-07-06T13:00:00Z"),
        ("c-close", "2027-07-06T21:00:00Z", "2027-07-07T13:00:00Z"),
        ("c-night", "2027-07-07T02:00:00Z", "2027-07-07T13:00:00Z"),
    ],
)
def test_outside_the_hours_waits_for_the_next_opening(
    hours: Replay, contact: str, tagged: str, sent: str
) -> None:
    assert hours.deferrals(contact, "mail") == [("outside_hours", tagged, sent)]
    assert hours.times("email.send", contact_id=contact) == [sent]


@pytest.mark.parametrize(
    ("contact", "tagged"),
    [("c-open", "2027-07-06T13:00:00Z"), ("c-lastmin", "2027-07-06T20:59:00Z")],
)
def test_inside_the_hours_runs_at_once(hours: Replay, contact: str, tagged: str) -> None:
    assert hours.deferrals(contact, "mail") == []
    assert hours.times("email.send", contact_id=contact) == [tagged]


def test_a_later_step_inside_the_hours_runs_when_due(hours: Replay) -> None:
    assert hours.times("email.send", contact_id="c-chain") == [
        "2027-07-06T19:00:00Z",
        "2027-07-06T20:30:00Z",
    ]
    assert hours.one("enrollment.completed", contact_id="c-chain")["time"] == (
        "2027-07-06T20:30:00Z"
    )


def test_a_later_step_after_close_waits_for_tomorrow(hours: Replay) -> None:
    scheduled = hours.one("step.scheduled", contact_id="c-chain2", step_id="s2")
    assert scheduled["data"]["due_at"] == "2027-07-06T21:30:00Z"
    assert hours.deferrals("c-chain2", "s2") == [
        ("outside_hours", "2027-07-06T21:30:00Z", "2027-07-07T13:00:00Z")
    ]
    assert hours.times("email.send", contact_id="c-chain2") == [
        "2027-07-06T20:00:00Z",
        "2027-07-07T13:00:00Z",
    ]


def test_friday_evening_moves_to_monday_opening_as_outside_hours(weekend: Replay) -> None:
    assert weekend.deferrals("c-fri", "s2") == [
        ("outside_hours", "2027-07-09T21:30:00Z", "2027-07-12T13:00:00Z")
    ]
    assert weekend.times("email.send", contact_id="c-fri") == [
        "2027-07-09T20:30:00Z",
        "2027-07-12T13:00:00Z",
    ]
    assert weekend.one("enrollment.completed", contact_id="c-fri")["time"] == (
        "2027-07-12T13:00:00Z"
    )


def test_saturday_inside_the_hours_keeps_its_local_time_on_monday(weekend: Replay) -> None:
    assert weekend.deferrals("c-sat", "s1") == [
        ("non_processing_day", "2027-07-10T15:00:00Z", "2027-07-12T15:00:00Z")
    ]
    assert weekend.times("email.send", contact_id="c-sat") == [
        "2027-07-12T15:00:00Z",
        "2027-07-12T16:00:00Z",
    ]


@pytest.mark.parametrize(
    ("contact", "tagged"),
    [("c-satearly", "2027-07-10T11:00:00Z"), ("c-sun", "2027-07-12T00:00:00Z")],
)
def test_weekend_outside_the_hours_names_the_first_reason(
    weekend: Replay, contact: str, tagged: str
) -> None:
    assert weekend.deferrals(contact, "s1") == [("outside_hours", tagged, "2027-07-12T13:00:00Z")]
    assert weekend.times("email.send", contact_id=contact) == [
        "2027-07-12T13:00:00Z",
        "2027-07-12T14:00:00Z",
    ]


def test_every_day_sequences_run_on_saturday(weekend: Replay) -> None:
    assert weekend.times("email.send", contact_id="c-daily") == ["2027-07-10T15:00:00Z"]
    assert weekend.deferrals("c-daily", "s1") == []


def test_thanksgiving_is_skipped_after_close_the_day_before(thanksgiving: Replay) -> None:
    assert thanksgiving.deferrals("c-wed", "s2") == [
        ("outside_hours", "2027-11-24T23:00:00Z", "2027-11-26T14:00:00Z")
    ]
    assert thanksgiving.times("email.send", contact_id="c-wed") == [
        "2027-11-24T21:00:00Z",
        "2027-11-26T14:00:00Z",
    ]


def test_thanksgiving_itself_is_a_holiday(thanksgiving: Replay) -> None:
    assert thanksgiving.deferrals("c-thu", "s1") == [
        ("holiday", "2027-11-25T15:00:00Z", "2027-11-26T15:00:00Z")
    ]
    assert thanksgiving.times("email.send", contact_id="c-thu") == [
        "2027-11-26T15:00:00Z",
        "2027-11-26T17:00:00Z",
    ]


def test_run_on_holidays_works_on_thanksgiving_but_not_on_saturday(thanksgiving: Replay) -> None:
    assert thanksgiving.times("email.send", contact_id="c-open") == ["2027-11-25T15:00:00Z"]
    assert thanksgiving.deferrals("c-open", "s1") == []
    assert thanksgiving.deferrals("c-open-sat", "s1") == [
        ("non_processing_day", "2027-11-27T15:00:00Z", "2027-11-29T15:00:00Z")
    ]
    assert thanksgiving.times("email.send", contact_id="c-open-sat") == ["2027-11-29T15:00:00Z"]


@pytest.mark.parametrize(
    ("contact", "tagged", "sent"),
    [
        ("c-2026", "2026-07-03T14:00:00Z", "2026-07-06T14:00:00Z"),
        ("c-2027", "2027-07-05T14:00:00Z", "2027-07-06T14:00:00Z"),
        ("c-2028", "2028-07-04T14:00:00Z", "2028-07-05T14:00:00Z"),
    ],
)
def test_independence_day_and_its_observed_days(
    july4: Replay, contact: str, tagged: str, sent: str
) -> None:
    assert july4.deferrals(contact, "s1") == [("holiday", tagged, sent)]
    assert july4.times("email.send", contact_id=contact) == [sent]


def test_a_holiday_on_a_saturday_is_a_non_processing_day(july4: Replay) -> None:
    assert july4.deferrals("c-2026sat", "s1") == [
        ("non_processing_day", "2026-07-04T14:00:00Z", "2026-07-06T14:00:00Z")
    ]


@pytest.mark.parametrize(
    ("contact", "tagged"),
    [("c-2027fri", "2027-07-02T14:00:00Z"), ("c-2028mon", "2028-07-03T14:00:00Z")],
)
def test_the_days_next_to_independence_day_are_business_days(
    july4: Replay, contact: str, tagged: str
) -> None:
    assert july4.deferrals(contact, "s1") == []
    assert july4.times("email.send", contact_id=contact) == [tagged]


@pytest.mark.parametrize(
    ("contact", "reason", "tagged", "sent"),
    [
        ("c-eve", "holiday", "2027-12-24T15:00:00Z", "2027-12-27T15:00:00Z"),
        ("c-nye", "holiday", "2027-12-31T15:00:00Z", "2028-01-03T15:00:00Z"),
        ("c-xmas-2028", "holiday", "2028-12-25T15:00:00Z", "2028-12-26T15:00:00Z"),
        ("c-2033sun", "non_processing_day", "2033-12-25T15:00:00Z", "2033-12-26T15:00:00Z"),
    ],
)
def test_year_end_holidays(
    year_end: Replay, contact: str, reason: str, tagged: str, sent: str
) -> None:
    assert year_end.deferrals(contact, "s1") == [(reason, tagged, sent)]
    assert year_end.times("email.send", contact_id=contact) == [sent]


@pytest.mark.parametrize(
    ("contact", "tagged"),
    [
        ("c-open-eve", "2027-12-24T15:00:00Z"),
        ("c-2033fri", "2033-12-30T15:00:00Z"),
        ("c-2034", "2034-01-02T15:00:00Z"),
    ],
)
def test_year_end_days_that_are_worked(year_end: Replay, contact: str, tagged: str) -> None:
    assert year_end.deferrals(contact, "s1") == []
    assert year_end.times("email.send", contact_id=contact) == [tagged]


@pytest.mark.parametrize(
    ("contact", "tagged", "sent"),
    [
        ("c-newyear", "2027-01-01T15:00:00Z", "2027-01-04T15:00:00Z"),
        ("c-mlk", "2028-01-17T15:00:00Z", "2028-01-18T15:00:00Z"),
        ("c-presidents", "2028-02-21T15:00:00Z", "2028-02-22T15:00:00Z"),
        ("c-memorial", "2028-05-29T14:00:00Z", "2028-05-30T14:00:00Z"),
        ("c-juneteenth", "2028-06-19T14:00:00Z", "2028-06-20T14:00:00Z"),
        ("c-labor", "2028-09-04T14:00:00Z", "2028-09-05T14:00:00Z"),
        ("c-thanksgiving", "2028-11-23T15:00:00Z", "2028-11-24T15:00:00Z"),
    ],
)
def test_each_listed_holiday_defers(holidays: Replay, contact: str, tagged: str, sent: str) -> None:
    assert holidays.deferrals(contact, "s1") == [("holiday", tagged, sent)]
    assert holidays.times("email.send", contact_id=contact) == [sent]


@pytest.mark.parametrize(
    ("contact", "tagged"),
    [
        ("c-juneteenth-fri", "2027-06-18T14:00:00Z"),
        ("c-columbus", "2027-10-11T14:00:00Z"),
        ("c-veterans", "2027-11-11T15:00:00Z"),
        ("c-jan-2nd-mon", "2028-01-10T15:00:00Z"),
        ("c-may-4th-mon", "2028-05-22T14:00:00Z"),
        ("c-nov-3rd-thu", "2028-11-16T15:00:00Z"),
        ("c-nov-5th-thu", "2028-11-30T15:00:00Z"),
    ],
)
def test_days_off_the_list_are_business_days(holidays: Replay, contact: str, tagged: str) -> None:
    assert holidays.deferrals(contact, "s1") == []
    assert holidays.times("email.send", contact_id=contact) == [tagged]


@pytest.fixture(scope="module")
def chain(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("deferral_chain")


def test_quiet_hours_then_a_holiday_is_one_deferral_named_quiet_hours(chain: Replay) -> None:
    assert chain.deferrals("c-thx", "s1") == [
        ("quiet_hours", "2027-11-25T03:00:00Z", "2027-11-26T13:00:00Z")
    ]
    assert chain.times("sms.send", contact_id="c-thx") == ["2027-11-26T13:00:00Z"]


def test_a_weekend_then_quiet_hours_is_one_deferral_named_non_processing_day(
    chain: Replay,
) -> None:
    assert chain.deferrals("c-sat", "s1") == [
        ("non_processing_day", "2027-07-10T11:30:00Z", "2027-07-12T12:00:00Z")
    ]
    assert chain.times("sms.send", contact_id="c-sat") == ["2027-07-12T12:00:00Z"]
    assert chain.deferrals("c-sat-mail", "s1") == [
        ("non_processing_day", "2027-07-10T11:30:00Z", "2027-07-12T11:30:00Z")
    ]
    assert chain.times("email.send", contact_id="c-sat-mail") == ["2027-07-12T11:30:00Z"]


def test_hours_that_never_meet_the_quiet_hours_send_nothing(chain: Replay) -> None:
    assert chain.status == 0
    chain.none("sms.send", contact_id="c-never")


@pytest.fixture(scope="module")
def local_dates(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("holiday_local_date")


@pytest.mark.parametrize(
    ("contact", "tagged"),
    [
        ("c-la-fri", "2027-07-10T05:00:00Z"),
        ("c-tokyo", "2027-07-11T23:00:00Z"),
        ("c-la-wed", "2027-11-25T07:30:00Z"),
    ],
)
def test_a_business_day_in_the_contacts_calendar(
    local_dates: Replay, contact: str, tagged: str
) -> None:
    assert local_dates.deferrals(contact, "s1") == []
    assert local_dates.times("email.send", contact_id=contact) == [tagged]


def test_a_holiday_in_the_contacts_calendar(local_dates: Replay) -> None:
    assert local_dates.deferrals("c-la-thu", "s1") == [
        ("holiday", "2027-11-26T07:30:00Z", "2027-11-27T07:30:00Z")
    ]
    assert local_dates.times("email.send", contact_id="c-la-thu") == ["2027-11-27T07:30:00Z"]
