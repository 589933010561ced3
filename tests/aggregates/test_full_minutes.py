"""The throttle's full minutes as runs, held to a plain count of every minute."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from aggregates.full_minutes import FullMinutes

# (what, minute): count one more, give one back, or forget the minutes before it.
Change = tuple[str, int]
changes = st.lists(
    st.tuples(st.sampled_from(["count", "count", "give_back", "forget"]), st.integers(0, 30)),
    max_size=200,
)


def first_free_counted(counts: dict[int, int], limit: int, minute: int) -> int:
    while counts.get(minute, 0) >= limit:
        minute += 1
    return minute


@given(changes, st.integers(1, 3), st.integers(0, 40))
def test_runs_answer_as_a_walk_over_the_counts(
    history: list[Change], limit: int, rebuilt_after: int
) -> None:
    counts: dict[int, int] = {}
    full = FullMinutes()
    full.rebuild(counts, limit)
    for step, (what, minute) in enumerate(history):
        if what == "count":
            counts[minute] = counts.get(minute, 0) + 1
            full.counted(minute, counts[minute])
        elif what == "give_back" and counts.get(minute):
            counts[minute] -= 1
            full.given_back(minute, counts[minute])
            if not counts[minute]:
                del counts[minute]
        elif what == "forget":
            counts = {m: n for m, n in counts.items() if m >= minute}
            full.forget_before(minute)
        if step == rebuilt_after:
            full.rebuild(counts, limit)  # a limit asked again: the same runs
        for asked in range(35):
            assert full.first_free(asked) == first_free_counted(counts, limit, asked)
    assert all(end < start for end, start in zip(full.ends, full.starts[1:], strict=False))


def test_a_minute_freed_in_the_middle_of_a_run_splits_it() -> None:
    full = FullMinutes()
    full.rebuild(dict.fromkeys(range(10, 20), 1), 1)
    assert (full.starts, full.ends) == ([10], [20])
    full.given_back(14, 0)
    assert (full.starts, full.ends) == ([10, 15], [14, 20])
    assert (full.first_free(10), full.first_free(15), full.first_free(20)) == (14, 20, 20)
    full.counted(14, 1)
    assert (full.starts, full.ends) == ([10], [20])
