"""Forgetting passed minutes drops exactly their counters: those ahead are as they were."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from aggregates.throttle import MinuteThrottle, minute_start

START = datetime(2028, 3, 2, 10, tzinfo=UTC)

# (what, holder, sequence, seconds from START): hold (movable or not), release, take,
# count an unthrottled execution, or forget the minutes before the moment.
Change = tuple[str, int, str, int]
changes = st.lists(
    st.tuples(
        st.sampled_from(
            ["hold", "hold", "hold_movable", "release", "take", "unthrottled", "forget"]
        ),
        st.integers(0, 15),
        st.sampled_from(["s-1", "s-2"]),
        st.integers(0, 900),
    ),
    max_size=150,
)


@settings(max_examples=300)
@given(changes, st.integers(1, 3))
def test_forgetting_drops_the_passed_minutes_and_nothing_else(
    history: list[Change], limit: int
) -> None:
    throttle = MinuteThrottle()
    for what, number, sequence_id, seconds in history:
        holder, moment = f"e-{number}", START + timedelta(seconds=seconds)
        if what.startswith("hold"):
            throttle.hold(holder, sequence_id, moment, limit, movable=what == "hold_movable")
        elif what == "release":
            throttle.release(holder)
        elif what == "take":
            throttle.take(holder, moment)
        elif what == "unthrottled":
            throttle.count_unthrottled(sequence_id, moment)
        else:
            before = throttle.snapshot()
            throttle.forget_before(moment)
            cutoff = START + timedelta(seconds=seconds)
            kept = {
                sequence: {m: n for m, n in counts.items() if minute_start(m + 1) > cutoff}
                for sequence, counts in before.items()
            }
            assert throttle.snapshot() == {s: counts for s, counts in kept.items() if counts}
        throttle.displaced.clear()
