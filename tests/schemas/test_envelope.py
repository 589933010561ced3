"""parse_time and parse_event_time: every time they cannot take is a ValueError, so that each
caller's ValueError handling covers it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schemas.envelope import TimeOutOfRange, parse_event_time, parse_time

OUT_OF_RANGE = "must be between 1900-01-01T00:00:00Z and 9000-12-31T23:59:59Z"


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_time_that_leaves_datetimes_range_in_utc_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="cannot be expressed in UTC") as caught:
        parse_time(text)

    assert isinstance(caught.value, TimeOutOfRange)


def test_parse_time_keeps_any_time_it_can_hold() -> None:
    assert parse_time("9999-12-31T23:59:59Z") == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "9999-12-31T23:59:59Z",
        "1899-12-31T23:59:59Z",
        "9001-01-01T00:00:00Z",
    ],
)
def test_an_event_time_outside_the_engines_range_is_refused(text: str) -> None:
    with pytest.raises(TimeOutOfRange) as caught:
        parse_event_time(text)

    assert str(caught.value) == OUT_OF_RANGE


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("1900-01-01T00:00:00Z", datetime(1900, 1, 1, tzinfo=UTC)),
        ("9000-12-31T22:59:59-01:00", datetime(9000, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ],
)
def test_an_event_time_inside_the_range_is_parsed_to_utc(text: str, utc: datetime) -> None:
    assert parse_event_time(text) == utc


def test_text_that_is_no_time_is_still_a_plain_value_error() -> None:
    with pytest.raises(ValueError, match="yesterday") as caught:
        parse_event_time("yesterday")

    assert not isinstance(caught.value, TimeOutOfRange)
