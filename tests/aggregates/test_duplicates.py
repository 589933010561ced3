"""RecentIdentities: an input's source + id remembered for DUPLICATE_WINDOW of event time,
with the fingerprint of the event it named."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aggregates.duplicates import DUPLICATE_WINDOW, RecentIdentities

T0 = datetime(2027, 7, 6, 14, 0, tzinfo=UTC)


def test_an_identity_is_remembered_within_the_window_and_forgotten_after_it() -> None:
    recent = RecentIdentities()
    assert recent.earlier("e-1@crm", T0) is None
    recent.remember("e-1@crm", T0, 17)
    assert recent.earlier("e-1@crm", T0 + DUPLICATE_WINDOW) == 17
    assert recent.earlier("e-1@crm", T0 + DUPLICATE_WINDOW + timedelta(seconds=1)) is None


def test_the_same_id_from_another_source_is_another_event() -> None:
    recent = RecentIdentities()
    recent.remember("e-1@crm", T0, 17)
    assert recent.earlier("e-1@web-forms", T0) is None


def test_memory_follows_the_window_not_the_history() -> None:
    # given a day and a half of one input a minute
    recent = RecentIdentities()
    for minute in range(36 * 60):
        recent.remember(f"e-{minute}@crm", T0 + timedelta(minutes=minute), minute)
    # then only the last day's identities (and the one at its edge) are kept
    assert len(recent) == 24 * 60 + 1


def test_an_identity_decided_again_later_is_remembered_from_then() -> None:
    recent = RecentIdentities()
    recent.remember("e-1@crm", T0, 1)
    recent.remember("e-1@crm", T0 + DUPLICATE_WINDOW * 2, 2)
    # the first one's entry leaving the window does not take the second one's with it
    recent.remember("e-2@crm", T0 + DUPLICATE_WINDOW * 2 + timedelta(hours=1), 3)
    assert recent.earlier("e-1@crm", T0 + DUPLICATE_WINDOW * 2 + timedelta(hours=2)) == 2


def test_moments_out_of_order_keep_one_list_a_minute_and_are_forgotten_in_time() -> None:
    # given inputs of two partitions whose event clocks are an hour apart, interleaved
    recent = RecentIdentities()
    for n in range(120):
        late = T0 + timedelta(seconds=n)
        recent.remember(f"a-{n}@crm", late + timedelta(hours=1), n)
        recent.remember(f"b-{n}@crm", late, n)
    # then each minute has one list, not one per switch between the clocks
    assert len(recent._by_minute) == 4
    # and a day on, the earlier clock's identities go first, the later's when their time comes
    recent.remember("c-1@crm", T0 + DUPLICATE_WINDOW + timedelta(minutes=30), 1)
    assert recent.earlier("b-0@crm", T0 + DUPLICATE_WINDOW + timedelta(minutes=30)) is None
    assert len(recent) == 120 + 1
    assert recent.earlier("a-0@crm", T0 + DUPLICATE_WINDOW + timedelta(minutes=30)) == 0
