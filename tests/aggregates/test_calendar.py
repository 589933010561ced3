"""The business calendar: CONTRACT.md §3 (a)-(c), DST gaps and folds, time-of-day delays."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from aggregates.calendar import (
    Calendar,
    DailyWindow,
    adjust_due,
    is_processing_day,
    local_at,
    next_processing_day,
    time_of_day_due,
    within_open_hours,
    within_window,
)

DENVER = ZoneInfo("America/Denver")
NEW_YORK = ZoneInfo("America/New_York")
SYDNEY = ZoneInfo("Australia/Sydney")


def at(zone: ZoneInfo, text: str, *, fold: int = 0) -> datetime:
    """The instant (UTC) the wall clock in `zone` reads `text` ("YYYY-MM-DD HH:MM")."""
    naive = datetime.fromisoformat(text)
    return naive.replace(tzinfo=zone, fold=fold).astimezone(UTC)


def hours(start: str, end: str) -> DailyWindow:
    return DailyWindow(time.fromisoformat(start), time.fromisoformat(end))


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# The welcome scenario's sequence: business days, 08:30-18:00, quiet hours 08:00-21:00.
WELCOME = Calendar(
    process_on="business_days",
    run_on_holidays=False,
    open_hours=hours("08:30", "18:00"),
    quiet_hours=hours("08:00", "21:00"),
)
EVERY_DAY_ALL_DAY = Calendar(
    process_on="every_day", run_on_holidays=False, open_hours=None, quiet_hours=None
)


# --- local_at -----------------------------------------------------------------------------


def test_local_at_gives_the_utc_instant_of_a_wall_time() -> None:
    assert local_at(date(2028, 3, 3), time(8, 30), DENVER) == utc("2028-03-03T15:30:00")
    assert local_at(date(2028, 3, 3), time(8, 30), DENVER).tzinfo is UTC


def test_local_at_moves_a_wall_time_in_a_dst_gap_forward_by_the_gap() -> None:
    # given 2027-03-14, New York springs forward from 02:00 EST to 03:00 EDT
    # when asking for 02:30, which never shows on the clock
    moment = local_at(date(2027, 3, 14), time(2, 30), NEW_YORK)
    # then it is 03:30 EDT
    assert moment == utc("2027-03-14T07:30:00")
    assert moment.astimezone(NEW_YORK).isoformat() == "2027-03-14T03:30:00-04:00"


def test_local_at_takes_the_first_of_two_ambiguous_wall_times() -> None:
    # given 2027-11-07, New York falls back from 02:00 EDT to 01:00 EST: 01:30 shows twice
    moment = local_at(date(2027, 11, 7), time(1, 30), NEW_YORK)
    # then the first one, in EDT
    assert moment == utc("2027-11-07T05:30:00")
    assert moment.astimezone(NEW_YORK).utcoffset() == timedelta(hours=-4)


def test_local_at_in_the_southern_hemisphere() -> None:
    # Sydney springs forward on 2027-10-03 at 02:00 AEST to 03:00 AEDT
    assert local_at(date(2027, 10, 3), time(2, 30), SYDNEY) == utc("2027-10-02T16:30:00")
    # and falls back on 2027-04-04 at 03:00 AEDT to 02:00 AEST: 02:30 AEDT is the first
    assert local_at(date(2027, 4, 4), time(2, 30), SYDNEY) == utc("2027-04-03T15:30:00")


# --- time_of_day_due ----------------------------------------------------------------------


def test_time_of_day_counts_calendar_days_in_the_contact_zone() -> None:
    # given mail ran Friday 3 March 2028 08:30 in Denver (15:30Z)
    base = utc("2028-03-03T15:30:00")
    # when the call is due one day later at 09:15
    due = time_of_day_due(base, 1, time(9, 15), DENVER)
    # then it is Saturday 4 March 09:15 MST
    assert due == at(DENVER, "2028-03-04 09:15")


def test_time_of_day_uses_the_local_date_not_the_utc_date() -> None:
    # given 2028-03-03T02:00Z, which is still Thursday 2 March 19:00 in Denver
    due = time_of_day_due(utc("2028-03-03T02:00:00"), 1, time(10, 0), DENVER)
    assert due == at(DENVER, "2028-03-03 10:00")


def test_time_of_day_zero_days_is_today_when_the_time_is_still_ahead() -> None:
    base = at(DENVER, "2028-03-02 08:00")
    assert time_of_day_due(base, 0, time(9, 15), DENVER) == at(DENVER, "2028-03-02 09:15")


def test_time_of_day_zero_days_at_exactly_now_is_now() -> None:
    base = at(DENVER, "2028-03-02 09:15")
    assert time_of_day_due(base, 0, time(9, 15), DENVER) == base


def test_time_of_day_zero_days_already_passed_is_the_next_day() -> None:
    base = at(DENVER, "2028-03-02 09:16")
    assert time_of_day_due(base, 0, time(9, 15), DENVER) == at(DENVER, "2028-03-03 09:15")


def test_time_of_day_across_spring_forward_keeps_the_wall_time() -> None:
    # given Saturday 13 March 2027 10:00 EST, then 1 day later at 10:00 (now EDT)
    due = time_of_day_due(at(NEW_YORK, "2027-03-13 10:00"), 1, time(10, 0), NEW_YORK)
    assert due == utc("2027-03-14T14:00:00")


def test_time_of_day_into_a_dst_gap_moves_forward_by_the_gap() -> None:
    due = time_of_day_due(at(NEW_YORK, "2027-03-13 10:00"), 1, time(2, 30), NEW_YORK)
    assert due == utc("2027-03-14T07:30:00")  # 03:30 EDT


def test_time_of_day_rejects_negative_days() -> None:
    with pytest.raises(ValueError, match="days"):
        time_of_day_due(utc("2028-03-02T12:00:00"), -1, time(9, 0), DENVER)


# --- processing days ----------------------------------------------------------------------


def test_business_days_are_weekdays_without_holidays() -> None:
    assert is_processing_day(date(2028, 3, 3), WELCOME) == (True, None)  # Friday
    assert is_processing_day(date(2028, 3, 4), WELCOME) == (False, "non_processing_day")
    assert is_processing_day(date(2028, 3, 5), WELCOME) == (False, "non_processing_day")
    assert is_processing_day(date(2028, 1, 17), WELCOME) == (False, "holiday")  # MLK Day


def test_a_holiday_on_a_weekend_is_a_non_processing_day() -> None:
    assert is_processing_day(date(2026, 7, 4), WELCOME) == (False, "non_processing_day")
    assert is_processing_day(date(2026, 7, 3), WELCOME) == (False, "holiday")


def test_run_on_holidays_makes_holidays_working_days_but_not_weekends() -> None:
    cal = Calendar("business_days", run_on_holidays=True, open_hours=None, quiet_hours=None)
    assert is_processing_day(date(2028, 1, 17), cal) == (True, None)
    assert is_processing_day(date(2028, 3, 4), cal) == (False, "non_processing_day")


def test_every_day_processes_weekends_and_holidays() -> None:
    for day in (date(2028, 3, 4), date(2028, 1, 17), date(2028, 12, 25)):
        assert is_processing_day(day, EVERY_DAY_ALL_DAY) == (True, None)


def test_next_processing_day_skips_weekends_and_holiday_runs() -> None:
    assert next_processing_day(date(2028, 3, 3), WELCOME) == date(2028, 3, 6)
    # Christmas Eve and Christmas 2029 are Monday and Tuesday
    assert next_processing_day(date(2029, 12, 21), WELCOME) == date(2029, 12, 26)


# --- adjust_due: the welcome scenario ---------------------------------------------------


def test_welcome_mail_due_after_close_moves_to_the_next_opening() -> None:
    # given `mail` is due Thursday 2 March 2028 18:41 MST, after the 18:00 close
    due = at(DENVER, "2028-03-02 18:41")
    # when adjusting it for an e-mail
    moved, reason = adjust_due(due, DENVER, WELCOME, contact_facing_voice_or_text=False)
    # then it runs Friday 08:30 MST
    assert moved == utc("2028-03-03T15:30:00")
    assert reason == "outside_hours"


def test_welcome_call_due_on_saturday_moves_to_monday_at_the_same_time() -> None:
    # given `call` is due Saturday 4 March 2028 09:15 MST
    due = at(DENVER, "2028-03-04 09:15")
    # when adjusting it for a call (contact-facing voice)
    moved, reason = adjust_due(due, DENVER, WELCOME, contact_facing_voice_or_text=True)
    # then Monday 6 March 09:15 MST, not the 08:30 opening
    assert moved == at(DENVER, "2028-03-06 09:15")
    assert moved == utc("2028-03-06T16:15:00")
    assert reason == "non_processing_day"


def test_welcome_sms_within_hours_does_not_move() -> None:
    due = at(DENVER, "2028-03-02 15:41")
    assert adjust_due(due, DENVER, WELCOME, contact_facing_voice_or_text=True) == (due, None)


def test_a_due_moment_in_another_offset_comes_back_in_utc() -> None:
    due = datetime(2028, 3, 2, 15, 41, tzinfo=timezone(timedelta(hours=-7)))
    moved, reason = adjust_due(due, DENVER, WELCOME, contact_facing_voice_or_text=True)
    assert (moved, reason) == (utc("2028-03-02T22:41:00"), None)
    assert moved.tzinfo is UTC


def test_a_naive_due_moment_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        adjust_due(
            datetime(2028, 3, 2, 15, 41), DENVER, WELCOME, contact_facing_voice_or_text=False
        )


# --- adjust_due: the rules one by one ---------------------------------------------------


def test_before_opening_moves_to_the_same_days_opening() -> None:
    due = at(DENVER, "2028-03-02 06:10")
    moved, reason = adjust_due(due, DENVER, WELCOME, contact_facing_voice_or_text=False)
    assert (moved, reason) == (at(DENVER, "2028-03-02 08:30"), "outside_hours")


def test_at_close_is_outside_the_window() -> None:
    due = at(DENVER, "2028-03-02 18:00")
    moved, reason = adjust_due(due, DENVER, WELCOME, contact_facing_voice_or_text=False)
    assert (moved, reason) == (at(DENVER, "2028-03-03 08:30"), "outside_hours")


def test_at_opening_is_inside_the_window() -> None:
    due = at(DENVER, "2028-03-02 08:30")
    assert adjust_due(due, DENVER, WELCOME, contact_facing_voice_or_text=False) == (due, None)


def test_friday_after_close_goes_to_monday_opening_naming_the_first_reason() -> None:
    due = at(DENVER, "2028-03-03 19:00")
    moved, reason = adjust_due(due, DENVER, WELCOME, contact_facing_voice_or_text=False)
    assert (moved, reason) == (at(DENVER, "2028-03-06 08:30"), "outside_hours")


def test_a_weekday_holiday_defers_with_reason_holiday() -> None:
    # given Martin Luther King Jr. Day, Monday 17 January 2028, 10:00
    due = at(DENVER, "2028-01-17 10:00")
    moved, reason = adjust_due(due, DENVER, WELCOME, contact_facing_voice_or_text=False)
    assert (moved, reason) == (at(DENVER, "2028-01-18 10:00"), "holiday")


def test_the_observed_independence_day_is_a_holiday() -> None:
    due = at(DENVER, "2026-07-03 10:00")  # Friday; Jul 4 2026 is a Saturday
    moved, reason = adjust_due(due, DENVER, WELCOME, contact_facing_voice_or_text=False)
    assert (moved, reason) == (at(DENVER, "2026-07-06 10:00"), "holiday")


def test_a_holiday_then_a_weekend_are_all_skipped() -> None:
    # Friday 31 December 2027 (New Year's Eve), then the weekend
    due = at(DENVER, "2027-12-31 11:00")
    moved, reason = adjust_due(due, DENVER, WELCOME, contact_facing_voice_or_text=False)
    assert (moved, reason) == (at(DENVER, "2028-01-03 11:00"), "holiday")


def test_run_on_holidays_keeps_a_weekday_holiday() -> None:
    cal = Calendar("business_days", True, WELCOME.open_hours, WELCOME.quiet_hours)
    due = at(DENVER, "2028-01-17 10:00")
    assert adjust_due(due, DENVER, cal, contact_facing_voice_or_text=True) == (due, None)


def test_every_day_keeps_a_saturday() -> None:
    cal = Calendar("every_day", False, WELCOME.open_hours, WELCOME.quiet_hours)
    due = at(DENVER, "2028-03-04 09:15")
    assert adjust_due(due, DENVER, cal, contact_facing_voice_or_text=True) == (due, None)


def test_every_day_after_close_moves_to_saturday_opening() -> None:
    cal = Calendar("every_day", False, WELCOME.open_hours, None)
    due = at(DENVER, "2028-03-03 20:00")
    moved, reason = adjust_due(due, DENVER, cal, contact_facing_voice_or_text=False)
    assert (moved, reason) == (at(DENVER, "2028-03-04 08:30"), "outside_hours")


def test_no_open_hours_means_open_all_day() -> None:
    cal = Calendar("business_days", False, open_hours=None, quiet_hours=None)
    due = at(DENVER, "2028-03-02 03:07")
    assert adjust_due(due, DENVER, cal, contact_facing_voice_or_text=False) == (due, None)


def test_no_open_hours_on_a_weekend_keeps_the_wall_time() -> None:
    cal = Calendar("business_days", False, open_hours=None, quiet_hours=None)
    due = at(DENVER, "2028-03-05 23:59")
    moved, reason = adjust_due(due, DENVER, cal, contact_facing_voice_or_text=False)
    assert (moved, reason) == (at(DENVER, "2028-03-06 23:59"), "non_processing_day")


def test_quiet_hours_hold_back_an_sms() -> None:
    # given an every-day sequence open all day, quiet hours 08:00-21:00
    cal = Calendar("every_day", False, open_hours=None, quiet_hours=hours("08:00", "21:00"))
    # when an SMS is due at 07:00 and another at 21:30
    early = adjust_due(
        at(DENVER, "2028-03-02 07:00"), DENVER, cal, contact_facing_voice_or_text=True
    )
    late = adjust_due(
        at(DENVER, "2028-03-02 21:30"), DENVER, cal, contact_facing_voice_or_text=True
    )
    # then they wait for the next quiet-hours start
    assert early == (at(DENVER, "2028-03-02 08:00"), "quiet_hours")
    assert late == (at(DENVER, "2028-03-03 08:00"), "quiet_hours")


def test_quiet_hours_do_not_hold_back_an_email() -> None:
    cal = Calendar("every_day", False, open_hours=None, quiet_hours=hours("08:00", "21:00"))
    due = at(DENVER, "2028-03-02 07:00")
    assert adjust_due(due, DENVER, cal, contact_facing_voice_or_text=False) == (due, None)


def test_quiet_hours_into_a_weekend_then_the_weekend_rule() -> None:
    # given a business-days sequence open all day and an SMS due Friday 21:30
    cal = Calendar("business_days", False, None, hours("08:00", "21:00"))
    moved, reason = adjust_due(
        at(DENVER, "2028-03-03 21:30"), DENVER, cal, contact_facing_voice_or_text=True
    )
    # then Saturday 08:00 is not a business day either: Monday 08:00, first reason quiet hours
    assert (moved, reason) == (at(DENVER, "2028-03-06 08:00"), "quiet_hours")


def test_open_hours_then_quiet_hours_name_the_first_reason() -> None:
    cal = Calendar("every_day", False, hours("09:00", "17:00"), hours("10:00", "21:00"))
    moved, reason = adjust_due(
        at(DENVER, "2028-03-02 08:00"), DENVER, cal, contact_facing_voice_or_text=True
    )
    assert (moved, reason) == (at(DENVER, "2028-03-02 10:00"), "outside_hours")


def test_quiet_hours_ending_before_close_move_to_the_next_day() -> None:
    cal = Calendar("business_days", False, hours("09:00", "22:00"), hours("08:00", "21:00"))
    moved, reason = adjust_due(
        at(DENVER, "2028-03-02 21:15"), DENVER, cal, contact_facing_voice_or_text=True
    )
    # Friday 08:00 is before the 09:00 opening: 09:00
    assert (moved, reason) == (at(DENVER, "2028-03-03 09:00"), "quiet_hours")


def test_open_and_quiet_hours_that_never_meet_are_refused_for_voice_and_text() -> None:
    cal = Calendar("every_day", False, hours("06:00", "07:30"), hours("08:00", "21:00"))
    due = at(DENVER, "2028-03-02 12:00")
    with pytest.raises(ValueError, match="never overlap"):
        adjust_due(due, DENVER, cal, contact_facing_voice_or_text=True)
    # an e-mail ignores quiet hours and still finds the opening
    moved, _ = adjust_due(due, DENVER, cal, contact_facing_voice_or_text=False)
    assert moved == at(DENVER, "2028-03-03 06:00")


def test_a_window_must_start_before_it_ends() -> None:
    with pytest.raises(ValueError, match="before its end"):
        hours("18:00", "08:30")
    with pytest.raises(ValueError, match="before its end"):
        hours("08:30", "08:30")


def test_process_on_must_be_known() -> None:
    with pytest.raises(ValueError, match="process_on"):
        Calendar("weekends", False, None, None)  # type: ignore[arg-type]


# --- adjust_due across DST ----------------------------------------------------------------


def test_an_opening_in_the_spring_forward_gap_opens_after_the_gap() -> None:
    # given an every-day sequence opening at 02:30 New York time and a step due at 01:00
    # on 2027-03-14, the night 02:00-03:00 does not exist
    cal = Calendar("every_day", False, hours("02:30", "17:00"), None)
    due = at(NEW_YORK, "2027-03-14 01:00")
    moved, reason = adjust_due(due, NEW_YORK, cal, contact_facing_voice_or_text=False)
    # then it opens at 03:30 EDT: 02:30 moved forward by the gap
    assert moved == utc("2027-03-14T07:30:00")
    assert reason == "outside_hours"


def test_a_moment_after_the_gap_but_before_the_moved_opening_waits_for_it() -> None:
    cal = Calendar("every_day", False, hours("02:30", "17:00"), None)
    due = utc("2027-03-14T07:10:00")  # 03:10 EDT
    moved, reason = adjust_due(due, NEW_YORK, cal, contact_facing_voice_or_text=False)
    assert (moved, reason) == (utc("2027-03-14T07:30:00"), "outside_hours")


def test_the_day_after_a_gap_opens_at_the_normal_time() -> None:
    cal = Calendar("every_day", False, hours("02:30", "17:00"), None)
    due = at(NEW_YORK, "2027-03-14 18:00")
    moved, _ = adjust_due(due, NEW_YORK, cal, contact_facing_voice_or_text=False)
    assert moved == at(NEW_YORK, "2027-03-15 02:30")
    assert moved == utc("2027-03-15T06:30:00")


def test_a_weekend_gap_opening_is_kept_as_the_opening_on_monday() -> None:
    # given business days from 02:30 and a step due Sunday 2027-03-14 01:00 (gap night)
    cal = Calendar("business_days", False, hours("02:30", "17:00"), None)
    due = at(NEW_YORK, "2027-03-14 01:00")
    moved, reason = adjust_due(due, NEW_YORK, cal, contact_facing_voice_or_text=False)
    # then Monday at the 02:30 opening, not at the 03:30 the gap made of Sunday's opening
    assert moved == utc("2027-03-15T06:30:00")
    assert reason == "outside_hours"


def test_an_opening_on_the_fall_back_night_is_the_first_of_the_two() -> None:
    cal = Calendar("every_day", False, hours("01:30", "17:00"), None)
    due = at(NEW_YORK, "2027-11-07 00:10")
    moved, reason = adjust_due(due, NEW_YORK, cal, contact_facing_voice_or_text=False)
    assert moved == utc("2027-11-07T05:30:00")  # 01:30 EDT
    assert reason == "outside_hours"


def test_the_repeated_hour_after_close_does_not_reopen_the_window() -> None:
    # given a window 01:00-01:45 and a due at 01:50 EDT on the fall-back night
    cal = Calendar("every_day", False, hours("01:00", "01:45"), None)
    due = at(NEW_YORK, "2027-11-07 01:50", fold=0)
    moved, reason = adjust_due(due, NEW_YORK, cal, contact_facing_voice_or_text=False)
    # then the clock reading 01:00 again (EST) is not a new opening: the next day's 01:00
    assert moved == at(NEW_YORK, "2027-11-08 01:00")
    assert reason == "outside_hours"


def test_the_second_pass_of_the_fold_is_inside_a_window_opened_in_the_first() -> None:
    cal = Calendar("every_day", False, hours("01:30", "17:00"), None)
    due = at(NEW_YORK, "2027-11-07 01:10", fold=1)  # 01:10 EST, after 01:30 EDT
    assert adjust_due(due, NEW_YORK, cal, contact_facing_voice_or_text=False) == (due, None)


def test_quiet_hours_start_in_a_gap() -> None:
    cal = Calendar("every_day", False, None, hours("02:15", "21:00"))
    due = at(NEW_YORK, "2027-03-14 01:59")
    moved, reason = adjust_due(due, NEW_YORK, cal, contact_facing_voice_or_text=True)
    assert (moved, reason) == (utc("2027-03-14T07:15:00"), "quiet_hours")  # 03:15 EDT


def test_sydney_spring_forward_through_adjust_due() -> None:
    cal = Calendar("every_day", False, hours("02:30", "17:00"), None)
    due = at(SYDNEY, "2027-10-03 00:30")
    moved, _ = adjust_due(due, SYDNEY, cal, contact_facing_voice_or_text=False)
    assert moved == utc("2027-10-02T16:30:00")  # 03:30 AEDT


# --- within_open_hours --------------------------------------------------------------------


def test_within_open_hours_on_a_business_day() -> None:
    assert within_open_hours(at(DENVER, "2028-03-02 15:41"), DENVER, WELCOME)
    assert not within_open_hours(at(DENVER, "2028-03-02 18:41"), DENVER, WELCOME)
    assert not within_open_hours(at(DENVER, "2028-03-02 08:29"), DENVER, WELCOME)


def test_within_open_hours_needs_a_processing_day() -> None:
    assert not within_open_hours(at(DENVER, "2028-03-04 10:00"), DENVER, WELCOME)
    assert not within_open_hours(at(DENVER, "2028-01-17 10:00"), DENVER, WELCOME)


def test_within_open_hours_ignores_quiet_hours() -> None:
    cal = Calendar("every_day", False, None, hours("08:00", "21:00"))
    assert within_open_hours(at(DENVER, "2028-03-04 23:00"), DENVER, cal)


def test_within_window_uses_the_moment_s_own_local_day() -> None:
    window = hours("08:30", "18:00")
    assert within_window(utc("2028-03-03T00:30:00"), DENVER, window)  # Thu 17:30 MST
    assert not within_window(utc("2028-03-03T01:30:00"), DENVER, window)  # Thu 18:30 MST
    assert within_window(utc("2028-03-03T01:30:00"), DENVER, None)
