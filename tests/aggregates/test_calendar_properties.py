"""Properties of `adjust_due` over random zones, windows, calendars and due moments.

"Inside a window" is judged as the module documents: on the moment's local day, between the
instants `local_at` gives for the window's start and end (so a start in a DST gap opens
after the gap, and an ambiguous start is the first of the two).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from aggregates.calendar import (
    Calendar,
    DailyWindow,
    DeferReason,
    ProcessOn,
    adjust_due,
    local_at,
)
from aggregates.holiday_calendar import is_holiday

ZONES = [
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Phoenix",  # no DST
    "America/Los_Angeles",
    "America/Anchorage",
    "America/St_Johns",  # -03:30 with DST
    "America/Santiago",  # southern DST switching at local midnight
    "Pacific/Honolulu",
    "Europe/London",
    "Europe/Berlin",
    "Asia/Kolkata",  # +05:30
    "Asia/Kathmandu",  # +05:45
    "Australia/Sydney",  # southern DST
    "Australia/Adelaide",  # +09:30, southern DST
    "Australia/Lord_Howe",  # a 30-minute DST shift
    "UTC",
]
FIRST = datetime(2026, 1, 1, tzinfo=UTC)
LAST = datetime(2031, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def transitions(zone: ZoneInfo) -> list[datetime]:
    """The instants (UTC, whole minutes) at which `zone` changes its offset in 2026-2030."""
    found = []
    day = FIRST
    while day < LAST:
        low, high = day, day + timedelta(days=1)
        if low.astimezone(zone).utcoffset() != high.astimezone(zone).utcoffset():
            while high - low > MINUTE:  # bisect to the minute
                middle = low + (high - low) // 2
                middle -= timedelta(seconds=middle.second, microseconds=middle.microsecond)
                if middle.astimezone(zone).utcoffset() == low.astimezone(zone).utcoffset():
                    low = middle
                else:
                    high = middle
            found.append(high)
        day += timedelta(days=1)
    return found


TRANSITIONS = {name: transitions(ZoneInfo(name)) for name in ZONES}


def clock_minutes(wall: time) -> int:
    return wall.hour * 60 + wall.minute


def clock(minute_of_day: int) -> time:
    """A wall time from minutes after midnight; 1440 is the end of the day."""
    return time.max if minute_of_day >= 1440 else time(minute_of_day // 60, minute_of_day % 60)


@st.composite
def due_moments(draw: st.DrawFn, zone_name: str) -> datetime:
    """A whole-minute moment in 2026-2030, half the time within 36 hours of a DST change."""
    near = TRANSITIONS[zone_name]
    around_a_change = draw(st.booleans())
    if near and around_a_change:
        change = draw(st.sampled_from(near))
        return change + draw(st.integers(-36 * 60, 36 * 60)) * MINUTE
    return FIRST + draw(st.integers(0, (LAST - FIRST) // MINUTE - 1)) * MINUTE


@st.composite
def calendars(draw: st.DrawFn, process_on: ProcessOn | None = None) -> Calendar:
    """A calendar whose open and quiet windows (when both set) share at least one minute."""
    shared = draw(st.integers(0, 1439))

    def window() -> DailyWindow | None:
        if draw(st.integers(0, 4)) == 0:
            return None
        start = draw(st.integers(0, shared))
        end = draw(st.integers(shared + 1, 1440))
        return DailyWindow(clock(start), clock(end))

    kinds: list[ProcessOn] = ["every_day", "business_days"]
    return Calendar(
        process_on=draw(st.sampled_from(kinds)) if process_on is None else process_on,
        run_on_holidays=draw(st.booleans()),
        open_hours=window(),
        quiet_hours=window(),
    )


@st.composite
def cases(draw: st.DrawFn) -> tuple[ZoneInfo, datetime, Calendar, bool]:
    zone_name = draw(st.sampled_from(ZONES))
    return ZoneInfo(zone_name), draw(due_moments(zone_name)), draw(calendars()), draw(st.booleans())


def processing_day_reason(day: date, cal: Calendar) -> DeferReason | None:
    """Why `day` is not a processing day, independently of the module under test."""
    if cal.process_on == "every_day":
        return None
    if day.weekday() >= 5:
        return "non_processing_day"
    if not cal.run_on_holidays and is_holiday(day):
        return "holiday"
    return None


def judge(zone: ZoneInfo, cal: Calendar, voice: bool) -> Callable[[datetime], DeferReason | None]:
    """A function giving the first rule a moment breaks (None: the moment is valid)."""
    bounds: dict[tuple[date, DailyWindow], tuple[datetime, datetime]] = {}

    def inside(moment: datetime, day: date, window: DailyWindow | None) -> bool:
        if window is None:
            return True
        if (day, window) not in bounds:
            bounds[day, window] = (
                local_at(day, window.start, zone),
                local_at(day, window.end, zone),
            )
        start, end = bounds[day, window]
        return start <= moment < end

    def broken_rule(moment: datetime) -> DeferReason | None:
        day = moment.astimezone(zone).date()
        if not inside(moment, day, cal.open_hours):
            return "outside_hours"
        if (why := processing_day_reason(day, cal)) is not None:
            return why
        if voice and not inside(moment, day, cal.quiet_hours):
            return "quiet_hours"
        return None

    return broken_rule


@settings(max_examples=400, deadline=None)
@given(cases())
def test_the_result_is_valid_never_earlier_and_holds_still(
    case: tuple[ZoneInfo, datetime, Calendar, bool],
) -> None:
    zone, due, cal, voice = case
    broken_rule = judge(zone, cal, voice)
    # when adjusting a due moment
    result, reason = adjust_due(due, zone, cal, contact_facing_voice_or_text=voice)
    # then it is not earlier, breaks no rule, and adjusting it again changes nothing
    assert result >= due
    assert result.tzinfo is UTC
    assert broken_rule(result) is None
    assert adjust_due(result, zone, cal, contact_facing_voice_or_text=voice) == (result, None)
    # and the reason is the first rule the due moment broke (None when it broke none)
    assert reason == broken_rule(due)
    assert (reason is None) == (result == due)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(cases())
def test_from_a_processing_day_the_result_is_the_earliest_valid_minute(
    case: tuple[ZoneInfo, datetime, Calendar, bool],
) -> None:
    zone, due, cal, voice = case
    # given a due moment on a processing day (from a weekend or holiday, rule (b) keeps the
    # wall time, so an earlier opening that day is skipped on purpose: see the next test)
    assume(processing_day_reason(due.astimezone(zone).date(), cal) is None)
    result, _ = adjust_due(due, zone, cal, contact_facing_voice_or_text=voice)
    assume(result - due < timedelta(days=4))  # keeps the brute force bounded
    # then no whole minute between the due moment and the result breaks no rule
    broken_rule = judge(zone, cal, voice)
    moment = due
    while moment < result:
        assert broken_rule(moment) is not None, f"{moment} is valid and before {result}"
        moment += MINUTE


def next_processing_day(day: date, cal: Calendar) -> date:
    day += timedelta(days=1)
    while processing_day_reason(day, cal) is not None:
        day += timedelta(days=1)
    return day


@st.composite
def non_processing_cases(draw: st.DrawFn) -> tuple[ZoneInfo, datetime, Calendar, bool]:
    """A business-days calendar and a due moment inside open hours on a weekend or holiday."""
    zone_name = draw(st.sampled_from(ZONES))
    zone = ZoneInfo(zone_name)
    cal = draw(calendars(process_on="business_days"))
    day = date(2026, 1, 1) + timedelta(days=draw(st.integers(0, 1820)))
    while processing_day_reason(day, cal) is None:
        day += timedelta(days=1)
    window = cal.open_hours
    low = 0 if window is None else clock_minutes(window.start)
    # The last whole minute inside the window: one open to the end of the day ends at
    # time.max (23:59:59.999999), whose minute 23:59 is still inside it.
    end = 1440 if window is None or window.end == time.max else clock_minutes(window.end)
    high = end - 1
    minute = draw(st.integers(low, high))
    return zone, local_at(day, clock(minute), zone), cal, draw(st.booleans())


@settings(max_examples=300, deadline=None)
@given(non_processing_cases())
def test_from_a_non_processing_day_the_wall_time_moves_to_the_next_processing_day(
    case: tuple[ZoneInfo, datetime, Calendar, bool],
) -> None:
    zone, due, cal, voice = case
    broken_rule = judge(zone, cal, voice)
    assume(broken_rule(due) in ("non_processing_day", "holiday"))  # not pushed by a DST gap
    local = due.astimezone(zone)
    # when a due moment within hours falls on a weekend or a holiday
    result, reason = adjust_due(due, zone, cal, contact_facing_voice_or_text=voice)
    # then it runs as if it were due at the same wall time on the next processing day
    same_time_later = local_at(next_processing_day(local.date(), cal), local.time(), zone)
    assert result == adjust_due(same_time_later, zone, cal, contact_facing_voice_or_text=voice)[0]
    assert reason == broken_rule(due)
