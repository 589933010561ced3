"""The seed's holiday list (CONTRACT.md §3), year by year."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from aggregates.holiday_calendar import holiday_name, holidays_in, is_holiday

# Written out by hand from the rules, not computed: the test must not share the code's logic.
EXPECTED = {
    2026: [
        date(2026, 1, 1),
        date(2026, 1, 19),
        date(2026, 2, 16),
        date(2026, 5, 25),
        date(2026, 6, 19),
        date(2026, 7, 3),  # Jul 4 is a Saturday: observed on Friday
        date(2026, 7, 4),
        date(2026, 9, 7),
        date(2026, 11, 26),
        date(2026, 12, 24),
        date(2026, 12, 25),
        date(2026, 12, 31),
    ],
    2027: [
        date(2027, 1, 1),
        date(2027, 1, 18),
        date(2027, 2, 15),
        date(2027, 5, 31),
        date(2027, 6, 19),
        date(2027, 7, 4),
        date(2027, 7, 5),  # Jul 4 is a Sunday: observed on Monday
        date(2027, 9, 6),
        date(2027, 11, 25),
        date(2027, 12, 24),
        date(2027, 12, 25),
        date(2027, 12, 31),
    ],
    2028: [
        date(2028, 1, 1),
        date(2028, 1, 17),
        date(2028, 2, 21),
        date(2028, 5, 29),
        date(2028, 6, 19),
        date(2028, 7, 4),
        date(2028, 9, 4),
        date(2028, 11, 23),
        date(2028, 12, 24),
        date(2028, 12, 25),
        date(2028, 12, 31),
    ],
    2029: [
        date(2029, 1, 1),
        date(2029, 1, 15),
        date(2029, 2, 19),
        date(2029, 5, 28),
        date(2029, 6, 19),
        date(2029, 7, 4),
        date(2029, 9, 3),
        date(2029, 11, 22),
        date(2029, 12, 24),
        date(2029, 12, 25),
        date(2029, 12, 31),
    ],
    2030: [
        date(2030, 1, 1),
        date(2030, 1, 21),
        date(2030, 2, 18),
        date(2030, 5, 27),
        date(2030, 6, 19),
        date(2030, 7, 4),
        date(2030, 9, 2),
        date(2030, 11, 28),
        date(2030, 12, 24),
        date(2030, 12, 25),
        date(2030, 12, 31),
    ],
}


def all_days(year: int) -> list[date]:
    first = date(year, 1, 1)
    return [first + timedelta(days=n) for n in range((date(year + 1, 1, 1) - first).days)]


@pytest.mark.parametrize("year", sorted(EXPECTED))
def test_the_holidays_of_a_year_are_exactly_the_seed_list(year: int) -> None:
    # given every day of the year / when asking which are holidays
    found = [day for day in all_days(year) if is_holiday(day)]
    # then exactly the listed days are, no more and no fewer
    assert found == EXPECTED[year]
    assert sorted(holidays_in(year)) == EXPECTED[year]


@pytest.mark.parametrize(
    ("day", "name"),
    [
        (date(2026, 1, 1), "New Year's Day"),
        (date(2026, 1, 19), "Martin Luther King Jr. Day"),
        (date(2026, 2, 16), "Presidents' Day"),
        (date(2026, 5, 25), "Memorial Day"),
        (date(2026, 6, 19), "Juneteenth"),
        (date(2026, 7, 3), "Independence Day (observed)"),
        (date(2026, 7, 4), "Independence Day"),
        (date(2027, 7, 5), "Independence Day (observed)"),
        (date(2026, 9, 7), "Labor Day"),
        (date(2026, 11, 26), "Thanksgiving Day"),
        (date(2026, 12, 24), "Christmas Eve"),
        (date(2026, 12, 25), "Christmas Day"),
        (date(2026, 12, 31), "New Year's Eve"),
    ],
)
def test_a_holiday_has_its_name(day: date, name: str) -> None:
    assert holiday_name(day) == name


@pytest.mark.parametrize(
    "day",
    [
        date(2026, 10, 12),  # Columbus Day, 2nd Monday of October
        date(2027, 10, 11),
        date(2026, 11, 11),  # Veterans Day
        date(2030, 11, 11),  # Veterans Day on a Monday
        date(2026, 4, 3),  # Good Friday
        date(2028, 4, 14),  # Good Friday
        date(2026, 11, 27),  # the day after Thanksgiving
        date(2026, 12, 26),
        date(2027, 7, 3),  # Jul 4 2027 is a Sunday: the observed day is Monday, not Friday
        date(2026, 7, 5),  # Jul 4 2026 is a Saturday: the observed day is Friday, not Monday
        date(2027, 6, 18),  # Juneteenth 2027 is a Saturday and has no observed day
        date(2027, 12, 23),  # Christmas 2027 is a Saturday and has no observed day
        date(2028, 1, 3),  # New Year 2028 is a Saturday and has no observed day
        date(2029, 5, 21),  # the Monday before the last Monday of May
        date(2029, 1, 22),  # the 4th Monday of January
    ],
)
def test_days_off_the_list_are_not_holidays(day: date) -> None:
    assert not is_holiday(day)
    assert holiday_name(day) is None


def test_a_year_far_from_today_still_has_its_holidays() -> None:
    assert is_holiday(date(2100, 7, 5))  # Jul 4 2100 is a Sunday
    assert is_holiday(date(2199, 12, 31))
