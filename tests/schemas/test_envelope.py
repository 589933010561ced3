"""parse_time and parse_event_time: every time they cannot take is a ValueError, so that each
caller's ValueError handling covers it; format_time; an event's fingerprint."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.envelope import (
    CloudEvent,
    TimeOutOfRange,
    format_time,
    parse_event_time,
    parse_time,
)
from schemas.validation import decode_event

OUT_OF_RANGE = "must be between 1900-01-01T00:00:00Z and 9000-12-31T23:59:59Z"


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_time_that_leaves_datetimes_range_in_utc_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="cannot be expressed in UTC") as caught:
        parse_time(text)

    assert isinstance(caught.value, TimeOutOfRange)


@given(
    st.datetimes(
        min_value=datetime(2, 1, 1),
        max_value=datetime(9998, 12, 31),
        timezones=st.builds(
            timezone, st.builds(timedelta, minutes=st.integers(min_value=-1439, max_value=1439))
        ),
    )
)
def test_format_time_writes_rfc_3339_in_utc_as_isoformat_does(moment: datetime) -> None:
    utc = moment.astimezone(UTC)
    written = format_time(moment)
    # a Z for +00:00, microseconds only when there are any, and it reads back the same
    assert written == utc.replace(tzinfo=None).isoformat() + "Z"
    assert parse_time(written) == moment


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


FINGERPRINT_OF_A_TAG = """
from schemas.validation import decode_event
raw = (
    b'{"specversion":"1.0","id":"e-1","source":"crm","type":"contact.tag_added",'
    b'"time":"2027-07-02T20:30:00Z","subject":"c-1","data":{"tag":"hot","contact_id":"c-1"}}'
)
print(decode_event(raw, as_input=True).fingerprint())
"""


def test_an_events_fingerprint_is_the_same_in_every_process() -> None:
    # A worker's snapshot keeps the day's fingerprints for the next process to tell a
    # retry from another event under the same identity: given two processes whose string
    # hashes are salted differently
    seen = {
        subprocess.run(
            [sys.executable, "-c", FINGERPRINT_OF_A_TAG],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    # then both fingerprint the event alike, in 64 bits
    assert len(seen) == 1
    assert 0 <= int(seen.pop()) < 2**64


def test_a_fingerprint_tells_content_apart_and_not_the_time_or_key_order() -> None:
    def event(time: str, data: str, subject: str = "c-1") -> CloudEvent:
        raw = (
            '{"specversion":"1.0","id":"e-1","source":"crm","type":"contact.tag_added",'
            f'"time":"{time}","subject":"{subject}","data":{data}}}'
        )
        return decode_event(raw.encode(), as_input=True)

    first = event("2027-07-02T20:30:00Z", '{"contact_id":"c-1","tag":"hot"}')
    retried = event("2027-07-02T20:31:00Z", '{"tag":"hot","contact_id":"c-1"}')
    other = event("2027-07-02T20:30:00Z", '{"contact_id":"c-1","tag":"cold"}')
    elsewhere = event("2027-07-02T20:30:00Z", '{"contact_id":"c-2","tag":"hot"}', "c-2")
    assert first.fingerprint() == retried.fingerprint()
    assert len({first.fingerprint(), other.fingerprint(), elsewhere.fingerprint()}) == 3
