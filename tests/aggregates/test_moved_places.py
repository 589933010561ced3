"""The places a throttle moved, in blocks, held to a plain list of every place."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from aggregates.moved_places import MovedPlaces

START = datetime(2028, 3, 2, 10, tzinfo=UTC)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_the_moved_places_answer_the_latest_minute_of_those_due_before_a_moment() -> None:
    places = MovedPlaces()
    places.add("e-1", utc("2028-03-02T10:00:10"), 5)
    places.add("e-2", utc("2028-03-02T10:00:20"), 3)
    places.add("e-3", utc("2028-03-02T10:00:20"), 7)  # due as e-2: not before it
    assert places.latest_before(utc("2028-03-02T10:00:10")) is None
    assert places.latest_before(utc("2028-03-02T10:00:20")) == 5
    assert places.latest_before(utc("2028-03-02T10:00:21")) == 7
    places.remove("e-3")
    assert places.latest_before(utc("2028-03-02T10:00:21")) == 5
    places.forget_before(4)  # e-2's minute, 3, has passed
    assert places.latest_before(utc("2028-03-02T10:00:21")) == 5
    assert places.by_holder == {"e-1": (utc("2028-03-02T10:00:10"), 5)}
    places.remove("e-1")
    assert places.latest is None


def test_a_place_given_up_no_longer_answers_for_the_block_it_shared() -> None:
    # given blocks of one or two: [e-0] and [e-1, e-2], the second's latest minute e-1's
    places = MovedPlaces(block=1)
    places.add("e-0", START + timedelta(seconds=1), 5)
    places.add("e-1", START + timedelta(seconds=2), 9)
    places.add("e-2", START + timedelta(seconds=3), 1)
    # when e-1 leaves
    places.remove("e-1")
    # then the latest minute before a later moment is e-0's
    assert places.latest_before(START + timedelta(seconds=10)) == 5


# (what, holder, due in seconds from START, minute): add (or move) a place, remove one,
# forget the minutes before `minute`, or ask about the moment `due`.
Change = tuple[str, int, int, int]
changes = st.lists(
    st.tuples(
        st.sampled_from(["add", "add", "add", "remove", "remove", "forget", "ask"]),
        st.integers(0, 12),
        st.integers(0, 30),
        st.integers(0, 20),
    ),
    max_size=300,
)


def latest_before_listed(places: dict[str, tuple[datetime, int]], due: datetime) -> int | None:
    minutes = [minute for at, minute in places.values() if at < due]
    return max(minutes) if minutes else None


@settings(max_examples=300)
@given(changes, st.integers(1, 3))
def test_blocks_answer_as_a_look_over_every_place(history: list[Change], block: int) -> None:
    listed: dict[str, tuple[datetime, int]] = {}
    places = MovedPlaces(block=block)
    for what, number, seconds, minute in history:
        holder, due = f"e-{number}", START + timedelta(seconds=seconds)
        if what == "add":
            listed[holder] = (due, minute)
            places.add(holder, due, minute)
        elif what == "remove":
            listed.pop(holder, None)
            places.remove(holder)
        elif what == "forget":
            listed = {key: held for key, held in listed.items() if held[1] >= minute}
            places.forget_before(minute)
        assert places.latest_before(due) == latest_before_listed(listed, due)
        assert places.by_holder == listed
        if listed:
            assert places.latest is not None
            assert places.latest >= max(minute for _, minute in listed.values())
        else:
            assert places.latest is None
