"""The business calendar: when a step may run (CONTRACT.md §3 (a)-(c)).

All local-time arithmetic resolves wall times through `local_at`, so a wall time inside a
DST gap moves forward by the gap and an ambiguous one is the first of the two. A window
[start, end) on a local day is the span of instants `[local_at(day, start),
local_at(day, end))`; a moment is inside it when it lies in that span for its own local day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Literal, get_args
from zoneinfo import ZoneInfo

from aggregates.holiday_calendar import holiday_name, is_holiday

__all__ = [
    "Calendar",
    "DailyWindow",
    "DaySchedule",
    "DeferReason",
    "ProcessOn",
    "adjust_due",
    "holiday_name",
    "is_holiday",
    "is_processing_day",
    "local_at",
    "next_processing_day",
    "time_of_day_due",
    "within_open_hours",
    "within_window",
]

DeferReason = Literal["outside_hours", "non_processing_day", "holiday", "quiet_hours"]
ProcessOn = Literal["every_day", "business_days"]

_ONE_DAY = timedelta(days=1)
# Far beyond any real gap between working moments (a week, a run of holidays): a due
# moment that has not settled after this long never will.
_SCAN_LIMIT = timedelta(days=370)
_SATURDAY = 5


@dataclass(frozen=True, slots=True)
class DailyWindow:
    """A local-time window [start, end) on every day; start < end (no overnight windows).

    A window open to the end of the day ends at `time.max` (a `time` cannot say 24:00).
    """

    start: time
    end: time

    def __post_init__(self) -> None:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("a daily window holds local wall times, without tzinfo")
        if not self.start < self.end:
            raise ValueError(f"window start {self.start} must be before its end {self.end}")

    def meets(self, other: DailyWindow) -> bool:
        """Whether the two windows share a moment of the day."""
        return max(self.start, other.start) < min(self.end, other.end)


# The name DEVELOPERS.md uses for the schedule's hours.
DaySchedule = DailyWindow


@dataclass(frozen=True, slots=True)
class Calendar:
    """When one sequence may act on one kind of step.

    `open_hours`: the schedule's [open, close), None = open all day. `quiet_hours`: the
    account's window in which SMS, MMS, calls and voicemail may reach a contact, None = no
    limit. `run_on_holidays` only matters for `business_days`.
    """

    process_on: ProcessOn
    run_on_holidays: bool
    open_hours: DailyWindow | None
    quiet_hours: DailyWindow | None

    def __post_init__(self) -> None:
        if self.process_on not in get_args(ProcessOn):
            raise ValueError(f"process_on must be every_day or business_days: {self.process_on!r}")


def local_at(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The instant (aware, UTC) at which the wall clock in `zone` reads `at` on `day`.

    A wall time in a DST gap moves forward by the gap (02:30 on a New York spring-forward
    day is 03:30 EDT); an ambiguous one is the first of the two (fold=0).
    """
    # fold=0 reads a gap time with the offset from before the transition, which lands the
    # same length past the gap's end: exactly "forward by the gap".
    wall = datetime(
        day.year, day.month, day.day, at.hour, at.minute, at.second, at.microsecond, zone
    )
    return wall.astimezone(UTC)


def time_of_day_due(base: datetime, days: int, at: time, zone: ZoneInfo) -> datetime:
    """`days` calendar days after `base`'s local date, at `at` local time (aware, UTC).

    With `days` 0 and `at` already passed at `base` (strictly before it): the next day.
    """
    if days < 0:
        raise ValueError(f"days must not be negative, got {days}")
    day = _utc(base).astimezone(zone).date() + timedelta(days=days)
    due = local_at(day, at, zone)
    if days == 0 and due < base:
        due = local_at(day + _ONE_DAY, at, zone)
    return due


def is_processing_day(day: date, cal: Calendar) -> tuple[bool, DeferReason | None]:
    """(True, None) on a processing day; else (False, "non_processing_day") for a weekend
    and (False, "holiday") for a weekday holiday.

    `every_day` processes every day; `business_days` Monday to Friday, holidays included
    only with `run_on_holidays`. A holiday on a weekend counts as the weekend.
    """
    if cal.process_on == "every_day":
        return True, None
    if day.weekday() >= _SATURDAY:
        return False, "non_processing_day"
    if not cal.run_on_holidays and is_holiday(day):
        return False, "holiday"
    return True, None


def next_processing_day(day: date, cal: Calendar) -> date:
    """The first processing day strictly after `day`."""
    following = day + _ONE_DAY
    while not is_processing_day(following, cal)[0]:
        following += _ONE_DAY
    return following


def within_window(moment: datetime, zone: ZoneInfo, window: DailyWindow | None) -> bool:
    """Whether `moment` lies in `window` of its own local day (None = always)."""
    if window is None:
        return True
    moment = _utc(moment)
    start, end = _bounds(zone, moment.astimezone(zone).date(), window.start, window.end)
    return start <= moment < end


def window_close(moment: datetime, zone: ZoneInfo, window: DailyWindow) -> datetime | None:
    """When (UTC) the window `moment` lies in closes on its local day; None outside it."""
    moment = _utc(moment)
    start, end = _bounds(zone, moment.astimezone(zone).date(), window.start, window.end)
    return end if start <= moment < end else None


def within_open_hours(moment: datetime, zone: ZoneInfo, cal: Calendar) -> bool:
    """For `enroll_only_within_hours`: inside [open, close) local time on a processing day.

    The processing day counts too: a business-days sequence is not "within hours" on a
    Saturday or a holiday, since nothing it sends would go out then. Quiet hours do not
    count: they limit channels, not the sequence.
    """
    moment = _utc(moment)
    return is_processing_day(moment.astimezone(zone).date(), cal)[0] and within_window(
        moment, zone, cal.open_hours
    )


def adjust_due(
    due: datetime, zone: ZoneInfo, cal: Calendar, *, contact_facing_voice_or_text: bool
) -> tuple[datetime, DeferReason | None]:
    """The moment (aware, UTC) a step due at `due` may run, and the first reason it moved.

    Applies, in this order and again until nothing moves (CONTRACT.md §3):
    (a) outside [open, close) local time: to the next opening (`outside_hours`);
    (b) not a processing day: to the same local wall time on the next processing day
        (`non_processing_day`, or `holiday` for a weekday holiday); after (a) or (c) moved
        it, "the same wall time" is the opening it was moved to, even where that opening
        fell into a DST gap on the skipped day;
    (c) with `contact_facing_voice_or_text` (SMS, MMS, call, voicemail, not e-mail)
        outside the quiet-hours window: to the next window start (`quiet_hours`).
    The reason is None when `due` was already fine (then `due` comes back, in UTC). The
    result is never earlier than `due`. ValueError when no moment can ever satisfy the
    calendar (open hours and quiet hours that never meet).
    """
    moment = _utc(due)
    open_hours = cal.open_hours
    quiet = cal.quiet_hours if contact_facing_voice_or_text else None
    business_days = cal.process_on == "business_days"
    run_on_holidays = cal.run_on_holidays
    reason: DeferReason | None = None
    # The local wall time `moment` stands for (the opening it was last moved to), which
    # rule (b) keeps; None while `moment` is still `due` with its own wall time.
    wall: time | None = None
    give_up: datetime | None = None
    while True:
        moved = False
        day = moment.astimezone(zone).date()

        if open_hours is not None:
            start, end = _bounds(zone, day, open_hours.start, open_hours.end)
            if not start <= moment < end:
                moment = start if moment < start else _next_start(zone, day, open_hours, moment)
                wall = open_hours.start
                reason = reason or "outside_hours"
                moved = True
                day = moment.astimezone(zone).date()

        if business_days and (
            day.weekday() >= _SATURDAY or (not run_on_holidays and is_holiday(day))
        ):
            wall = wall if wall is not None else moment.astimezone(zone).time()
            moment = local_at(next_processing_day(day, cal), wall, zone)
            reason = reason or is_processing_day(day, cal)[1]
            moved = True
            day = moment.astimezone(zone).date()

        if quiet is not None:
            start, end = _bounds(zone, day, quiet.start, quiet.end)
            if not start <= moment < end:
                moment = start if moment < start else _next_start(zone, day, quiet, moment)
                wall = quiet.start
                reason = reason or "quiet_hours"
                moved = True

        if not moved:
            return moment, reason
        if give_up is None:  # the first move: off the fast path, check what can never hold
            _check_windows_meet(open_hours, quiet)
            give_up = _utc(due) + _SCAN_LIMIT
        elif moment > give_up:
            raise ValueError(
                f"no moment within {_SCAN_LIMIT.days} days of {due.isoformat()} satisfies"
                f" the calendar {cal!r} in {zone.key}"
            )


def _check_windows_meet(open_hours: DailyWindow | None, quiet: DailyWindow | None) -> None:
    if open_hours is not None and quiet is not None and not open_hours.meets(quiet):
        raise ValueError(
            f"open hours {_show(open_hours)} and quiet hours {_show(quiet)} never overlap:"
            " no moment can satisfy both"
        )


@lru_cache(maxsize=8192)
def _bounds(zone: ZoneInfo, day: date, start: time, end: time) -> tuple[datetime, datetime]:
    """The instants (UTC) a window [start, end) spans on a local day."""
    return local_at(day, start, zone), local_at(day, end, zone)


def _next_start(zone: ZoneInfo, day: date, window: DailyWindow, after: datetime) -> datetime:
    """The first opening of `window` on a day after `day` that lies after `after`."""
    while True:
        day += _ONE_DAY
        start = local_at(day, window.start, zone)
        if start > after:
            return start


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is UTC:
        return moment
    if moment.utcoffset() is None:
        raise ValueError(f"expected a timezone-aware moment, got {moment!r}")
    return moment.astimezone(UTC)


def _show(window: DailyWindow) -> str:
    return f"[{window.start.isoformat()}, {window.end.isoformat()})"
