"""The per-sequence minute throttle (CONTRACT.md §3 (d))."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from aggregates.throttle import MinuteThrottle, minute_of, minute_start


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def reserve_all(
    throttle: MinuteThrottle, sequence_id: str, dues: list[str], limit: int | None
) -> list[str]:
    """Reserve each due in order; the moments granted, as ISO strings."""
    return [throttle.reserve(sequence_id, utc(due), limit).isoformat() for due in dues]


def test_seven_in_one_minute_with_a_limit_of_three_spread_over_three_minutes() -> None:
    # given a sequence throttled to 3 per minute
    throttle = MinuteThrottle()
    # when 7 steps are due within the same minute, in due-time order
    dues = [f"2028-03-02T22:41:{second:02d}" for second in (0, 5, 10, 15, 20, 25, 30)]
    granted = reserve_all(throttle, "welcome", dues, limit=3)
    # then the first 3 run when due, the rest at the starts of the following minutes
    assert granted == [
        "2028-03-02T22:41:00+00:00",
        "2028-03-02T22:41:05+00:00",
        "2028-03-02T22:41:10+00:00",
        "2028-03-02T22:42:00+00:00",
        "2028-03-02T22:42:00+00:00",
        "2028-03-02T22:42:00+00:00",
        "2028-03-02T22:43:00+00:00",
    ]
    assert throttle.count("welcome", utc("2028-03-02T22:42:30")) == 3
    assert throttle.count("welcome", utc("2028-03-02T22:43:00")) == 1


def test_a_later_due_fills_a_minute_that_earlier_overflow_left_room_in() -> None:
    throttle = MinuteThrottle()
    granted = reserve_all(
        throttle,
        "s",
        [
            "2028-03-02T10:00:10",
            "2028-03-02T10:00:20",
            "2028-03-02T10:00:30",
            "2028-03-02T10:01:05",
        ],
        limit=2,
    )
    assert granted == [
        "2028-03-02T10:00:10+00:00",
        "2028-03-02T10:00:20+00:00",
        "2028-03-02T10:01:00+00:00",  # overflow into 10:01 (1 of 2)
        "2028-03-02T10:01:05+00:00",  # 10:01 still has room: runs when due
    ]
    # and the next one in 10:01 overflows to 10:02
    assert reserve_all(throttle, "s", ["2028-03-02T10:01:40"], limit=2) == [
        "2028-03-02T10:02:00+00:00"
    ]


def test_minutes_are_utc_minutes_whatever_the_offset_of_the_due_moment() -> None:
    throttle = MinuteThrottle()
    half_hour_zone = timezone(timedelta(hours=5, minutes=30))
    first = datetime(2028, 3, 2, 16, 11, 30, tzinfo=half_hour_zone)  # 10:41:30Z
    assert throttle.reserve("s", first, 1) == first
    assert throttle.reserve("s", first, 1) == utc("2028-03-02T10:42:00")


def test_sequences_are_throttled_separately() -> None:
    throttle = MinuteThrottle()
    due = utc("2028-03-02T10:00:00")
    assert throttle.reserve("a", due, 1) == due
    assert throttle.reserve("b", due, 1) == due
    assert throttle.reserve("a", due, 1) == utc("2028-03-02T10:01:00")


def test_unlimited_returns_due_and_counts_nothing() -> None:
    throttle = MinuteThrottle()
    due = utc("2028-03-02T10:00:00")
    for _ in range(1000):
        assert throttle.reserve("s", due, None) == due
    assert throttle.snapshot() == {}
    assert throttle.reserve("s", due, 1) == due  # the unlimited ones took no room


def test_a_raised_limit_reopens_full_minutes() -> None:
    throttle = MinuteThrottle()
    due = utc("2028-03-02T10:00:00")
    assert reserve_all(throttle, "s", ["2028-03-02T10:00:00"] * 2, limit=1) == [
        "2028-03-02T10:00:00+00:00",
        "2028-03-02T10:01:00+00:00",
    ]
    assert throttle.reserve("s", due, 2) == due


def test_a_large_burst_fills_each_minute_exactly_to_the_limit() -> None:
    throttle = MinuteThrottle()
    due = utc("2028-03-02T10:00:00")
    granted = [throttle.reserve("bulk", due, 60) for _ in range(60_000)]
    per_minute: dict[datetime, int] = {}
    for moment in granted:
        per_minute[moment] = per_minute.get(moment, 0) + 1
    assert set(per_minute.values()) == {60}
    assert len(per_minute) == 1000
    assert max(granted) == due + timedelta(minutes=999)
    assert granted == sorted(granted)


def test_forget_before_drops_only_minutes_wholly_before_the_moment() -> None:
    # given counters in 10:00, 10:01 and 10:02
    throttle = MinuteThrottle()
    reserve_all(throttle, "s", ["2028-03-02T10:00:00"] * 5, limit=2)
    assert sorted(throttle.snapshot()["s"].values()) == [1, 2, 2]
    # when forgetting before 10:01:30
    throttle.forget_before(utc("2028-03-02T10:01:30"))
    # then 10:00 is gone, 10:01 (not wholly before) and 10:02 stay
    minute = minute_of(utc("2028-03-02T10:00:00"))
    assert throttle.snapshot() == {"s": {minute + 1: 2, minute + 2: 1}}
    # and forgetting everything leaves nothing behind
    throttle.forget_before(utc("2028-03-02T10:03:00"))
    assert throttle.snapshot() == {}


def test_forget_before_an_exact_minute_keeps_that_minute() -> None:
    throttle = MinuteThrottle()
    throttle.reserve("s", utc("2028-03-02T10:01:00"), 5)
    throttle.forget_before(utc("2028-03-02T10:01:00"))
    assert throttle.count("s", utc("2028-03-02T10:01:00")) == 1


def test_minute_numbers_are_minutes_since_the_epoch() -> None:
    assert minute_of(utc("1970-01-01T00:01:59")) == 1
    assert minute_start(minute_of(utc("2028-03-02T10:00:42"))) == utc("2028-03-02T10:00:00")


def test_bad_arguments_are_refused() -> None:
    throttle = MinuteThrottle()
    with pytest.raises(ValueError, match="at least 1"):
        throttle.reserve("s", utc("2028-03-02T10:00:00"), 0)
    with pytest.raises(ValueError, match="timezone-aware"):
        throttle.reserve("s", datetime(2028, 3, 2, 10, 0), 5)


def test_a_held_place_is_used_when_the_step_runs_in_its_minute() -> None:
    # given a place held at 10:00:20 in a one-a-minute sequence
    throttle = MinuteThrottle()
    assert throttle.hold("e-1", "s", utc("2028-03-02T10:00:20"), 1) == utc("2028-03-02T10:00:20")
    # when the step runs in that minute, the place is its execution
    assert throttle.take("e-1", utc("2028-03-02T10:00:20"))
    # then it stays counted and is no longer held
    assert throttle.count("s", utc("2028-03-02T10:00:00")) == 1
    assert throttle.holders() == 0
    assert not throttle.take("e-1", utc("2028-03-02T10:00:20"))


def test_a_released_place_is_free_for_the_next_step() -> None:
    # given two places held for one-a-minute: 10:00 and, overflowing, 10:01
    throttle = MinuteThrottle()
    due = utc("2028-03-02T10:00:10")
    assert throttle.hold("e-1", "s", due, 1) == due
    assert throttle.hold("e-2", "s", due, 1) == utc("2028-03-02T10:01:00")
    # when the enrollment holding 10:01 ends
    throttle.release("e-2")
    # then the next step due in 10:00 is sent to 10:01 again, not to 10:02
    assert throttle.first_room("s", due, 1) == utc("2028-03-02T10:01:00")
    assert throttle.hold("e-3", "s", due, 1) == utc("2028-03-02T10:01:00")
    assert throttle.count("s", utc("2028-03-02T10:01:00")) == 1


def test_holding_again_gives_back_the_place_held_before() -> None:
    throttle = MinuteThrottle()
    throttle.hold("e-1", "s", utc("2028-03-02T10:00:00"), 1)
    throttle.hold("e-1", "s", utc("2028-03-02T11:00:00"), 1)
    assert throttle.count("s", utc("2028-03-02T10:00:00")) == 0
    assert throttle.count("s", utc("2028-03-02T11:00:00")) == 1
    assert throttle.holders() == 1


def test_a_place_held_in_another_minute_is_given_back_when_taken_late() -> None:
    # given a place held for 10:00, and the step fired late, at 10:05
    throttle = MinuteThrottle()
    throttle.hold("e-1", "s", utc("2028-03-02T10:00:00"), 1)
    # then taking it fails and gives the 10:00 place back
    assert not throttle.take("e-1", utc("2028-03-02T10:05:00"))
    assert throttle.count("s", utc("2028-03-02T10:00:00")) == 0


def test_first_room_counts_nothing() -> None:
    throttle = MinuteThrottle()
    due = utc("2028-03-02T10:00:00")
    throttle.reserve("s", due, 1)
    for _ in range(3):
        assert throttle.first_room("s", due, 1) == utc("2028-03-02T10:01:00")
    assert throttle.first_room("s", due, None) == due
    assert throttle.count("s", utc("2028-03-02T10:01:00")) == 0


def test_releasing_after_the_minute_was_forgotten_changes_nothing() -> None:
    throttle = MinuteThrottle()
    throttle.hold("e-1", "s", utc("2028-03-02T10:00:00"), 1)
    throttle.forget_before(utc("2028-03-02T10:05:00"))
    throttle.release("e-1")
    assert throttle.snapshot() == {}
    assert throttle.holders() == 0


def test_a_step_due_earlier_takes_the_place_of_an_undeferred_one_due_later() -> None:
    # given one a minute: 10:00 used at 10:00:00, and 10:01 held for a step due 10:01:00
    throttle = MinuteThrottle()
    first, later = utc("2028-03-02T10:00:00"), utc("2028-03-02T10:01:00")
    assert throttle.hold("e-1", "s", first, 1, movable=True) == first
    assert throttle.take("e-1", first)
    assert throttle.hold("e-2", "s", later, 1, movable=True) == later
    # when a step due 10:00:30 finds 10:00 full
    assert throttle.hold("e-3", "s", utc("2028-03-02T10:00:30"), 1) == later
    # then it has 10:01, and the step due later is displaced, for the engine to move on
    assert throttle.displaced == [("e-2", "s")]
    assert throttle.count("s", later) == 1
    assert not throttle.take("e-2", later)
    assert throttle.take("e-3", later)


def test_a_deferred_or_equally_due_holder_keeps_its_place() -> None:
    throttle = MinuteThrottle()
    full, later = utc("2028-03-02T10:00:00"), utc("2028-03-02T10:01:00")
    throttle.hold("e-1", "s", full, 1, movable=True)
    # a holder that was deferred (not movable), and one due at the same moment
    throttle.hold("e-2", "s", later, 1, movable=False)
    assert throttle.hold("e-3", "s", utc("2028-03-02T10:00:30"), 1) == utc("2028-03-02T10:02:00")
    throttle.hold("e-4", "s", utc("2028-03-02T10:03:00"), 1, movable=True)
    assert throttle.hold(
        "e-5", "s", utc("2028-03-02T10:03:00"), 1, rank=utc("2028-03-02T10:03:00")
    ) == utc("2028-03-02T10:04:00")
    assert throttle.displaced == []


def test_an_equally_due_holder_keeps_its_place_while_one_due_later_waits_further_on() -> None:
    # given 10:03 held for a step due 10:03:00, and 10:05 for one due 10:05:00
    throttle = MinuteThrottle()
    throttle.hold("e-1", "s", utc("2028-03-02T10:03:00"), 1, movable=True)
    throttle.hold("e-2", "s", utc("2028-03-02T10:05:00"), 1, movable=True)
    # when another step due 10:03:00 comes: then the first come keeps 10:03, it takes 10:04
    assert throttle.hold("e-3", "s", utc("2028-03-02T10:03:00"), 1) == utc("2028-03-02T10:04:00")
    assert throttle.displaced == []


def test_the_holder_due_latest_gives_way_and_a_released_place_displaces_nobody() -> None:
    # given two a minute, 10:05 held for steps due 10:05:10 and 10:05:50
    throttle = MinuteThrottle()
    throttle.hold("e-1", "s", utc("2028-03-02T10:05:10"), 2, movable=True)
    throttle.hold("e-2", "s", utc("2028-03-02T10:05:50"), 2, movable=True)
    # when a step due 10:05:40 comes: the one due latest gives way
    due = utc("2028-03-02T10:05:40")
    assert throttle.hold("e-3", "s", due, 2, movable=True) == due
    assert throttle.displaced == [("e-2", "s")]
    # the engine moves it on (held again, now deferred: not movable)
    throttle.displaced.clear()
    assert throttle.hold("e-2", "s", utc("2028-03-02T10:05:50"), 2) == utc("2028-03-02T10:06:00")
    # a place given back is just taken: a step due 10:05:20 displaces nobody
    throttle.release("e-3")
    due = utc("2028-03-02T10:05:20")
    assert throttle.hold("e-4", "s", due, 2) == due
    assert throttle.displaced == []
    assert throttle.count("s", due) == 2


def test_a_place_given_back_ahead_of_a_moved_step_goes_to_no_step_due_after_it() -> None:
    # given one a minute: 10:00 used, steps due 10:00:10 and 10:00:20 moved to 10:01, 10:02
    throttle = MinuteThrottle()
    throttle.hold("e-1", "s", utc("2028-03-02T10:00:00"), 1)
    assert throttle.hold("e-2", "s", utc("2028-03-02T10:00:10"), 1) == utc("2028-03-02T10:01:00")
    assert throttle.hold("e-3", "s", utc("2028-03-02T10:00:20"), 1) == utc("2028-03-02T10:02:00")
    # when 10:01 is given back
    throttle.release("e-2")
    # then a step due 10:00:40, moved too, goes behind the one due 10:00:20
    assert throttle.hold("e-4", "s", utc("2028-03-02T10:00:40"), 1) == utc("2028-03-02T10:03:00")
    # a step due in 10:01 itself is no overflow: it has its own minute
    due = utc("2028-03-02T10:01:30")
    assert throttle.hold("e-5", "s", due, 1) == due


def test_a_moved_step_that_ran_or_left_holds_no_one_back() -> None:
    throttle = MinuteThrottle()
    throttle.hold("e-1", "s", utc("2028-03-02T10:00:00"), 1)
    throttle.hold("e-2", "s", utc("2028-03-02T10:00:10"), 1)  # moved to 10:01
    throttle.hold("e-3", "s", utc("2028-03-02T10:00:20"), 1)  # moved to 10:02
    throttle.release("e-2")
    # the step due 10:00:20 leaves: 10:01 goes to the next step moved
    throttle.release("e-3")
    assert throttle.hold("e-4", "s", utc("2028-03-02T10:00:40"), 1) == utc("2028-03-02T10:01:00")


def test_a_moved_step_takes_over_no_place_before_one_due_earlier_moved_ahead_of_it() -> None:
    # given one a minute: 10:00 used, steps due 10:00:10 and 10:00:20 moved to 10:01, 10:02,
    # then 10:01 given back and held by an undeferred step due in it, 10:01:50
    throttle = MinuteThrottle()
    throttle.hold("e-1", "s", utc("2028-03-02T10:00:00"), 1)
    throttle.hold("e-2", "s", utc("2028-03-02T10:00:10"), 1)
    throttle.hold("e-3", "s", utc("2028-03-02T10:00:20"), 1)
    throttle.release("e-2")
    own = utc("2028-03-02T10:01:50")
    assert throttle.hold("e-4", "s", own, 1, movable=True) == own
    # when a step due 10:00:40 is moved: it would take 10:01 from the step due later, but
    # that puts it before the one due 10:00:20; it goes behind that one instead
    assert throttle.hold("e-5", "s", utc("2028-03-02T10:00:40"), 1) == utc("2028-03-02T10:03:00")
    assert throttle.displaced == []
