"""RecentIdentities: an input's source + id remembered for DUPLICATE_WINDOW of event time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aggregates.duplicates import DUPLICATE_WINDOW, RecentIdentities

T0 = datetime(2027, 7, 6, 14, 0, tzinfo=UTC)


def test_an_identity_is_a_repeat_within_the_window_and_new_after_it() -> None:
    recent = RecentIdentities()
    assert not recent.repeated("e-1@crm", T0)
    assert recent.repeated("e-1@crm", T0 + DUPLICATE_WINDOW)
    assert not recent.repeated("e-1@crm", T0 + DUPLICATE_WINDOW + timedelta(seconds=1))


def test_the_same_id_from_another_source_is_another_event() -> None:
    recent = RecentIdentities()
    assert not recent.repeated("e-1@crm", T0)
    assert not recent.repeated("e-1@web-forms", T0)


def test_memory_follows_the_window_not_the_history() -> None:
    # given a day and a half of one input a minute
    recent = RecentIdentities()
    for minute in range(36 * 60):
        assert not recent.repeated(f"e-{minute}@crm", T0 + timedelta(minutes=minute))
    # then only the last day's identities (and the one at its edge) are kept
    assert len(recent) == 24 * 60 + 1
