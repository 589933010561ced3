"""The holidays a business-days sequence does not run on (CONTRACT.md §3, the seed's list).

Built with the `holidays` package's helpers and cached per year: `is_holiday` is on the
hot path of every due-time adjustment.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import MAXYEAR, MINYEAR, date
from functools import lru_cache
from types import MappingProxyType

from holidays.observed_holiday_base import (
    SAT_TO_PREV_FRI,
    SUN_TO_NEXT_MON,
    ObservedHolidayBase,
)

__all__ = ["holiday_name", "holidays_in", "is_holiday"]


class SeedHolidays(ObservedHolidayBase):
    """The seed's eleven holidays; only Independence Day has an observed day.

    The list applies to every year (no start year for Juneteenth): the engine only ever
    looks at due moments, which lie in the present and future.
    """

    observed_label = "%s (observed)"
    # No country code: names stay in English whatever the process locale says.
    start_year = MINYEAR
    end_year = MAXYEAR

    def __init__(self, years: int | list[int] | None = None) -> None:
        super().__init__(
            observed_rule=SAT_TO_PREV_FRI + SUN_TO_NEXT_MON, years=years, language=None
        )

    def _populate_public_holidays(self) -> None:
        self._add_holiday_jan_1("New Year's Day")
        self._add_holiday_3rd_mon_of_jan("Martin Luther King Jr. Day")
        self._add_holiday_3rd_mon_of_feb("Presidents' Day")
        self._add_holiday_last_mon_of_may("Memorial Day")
        self._add_holiday_jun_19("Juneteenth")
        # Jul 4 on a Saturday is also observed on Friday Jul 3, on a Sunday on Monday Jul 5.
        self._add_observed(self._add_holiday_jul_4("Independence Day"))
        self._add_holiday_1st_mon_of_sep("Labor Day")
        self._add_holiday_4th_thu_of_nov("Thanksgiving Day")
        self._add_holiday_dec_24("Christmas Eve")
        self._add_holiday_dec_25("Christmas Day")
        self._add_holiday_dec_31("New Year's Eve")


@lru_cache(maxsize=64)
def holidays_in(year: int) -> Mapping[date, str]:
    """The holidays of `year`, date → name (read-only; computed once per year)."""
    return MappingProxyType(dict(SeedHolidays(years=year)))


def is_holiday(day: date) -> bool:
    """Whether `day` is one of the seed's holidays (an observed Jul 3 / Jul 5 included)."""
    return day in holidays_in(day.year)


def holiday_name(day: date) -> str | None:
    """The holiday's name on `day`, or None when `day` is not a holiday."""
    return holidays_in(day.year).get(day)
