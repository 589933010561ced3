"""Batches gathered while a write runs go in as one: each group's tracking then moves from
where the first of them found it to where the last left it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from streams.store import BatchRecord, GroupProgress


def test_a_gathered_batch_expects_what_the_first_found_and_moves_to_what_the_last_left() -> None:
    # given a batch moving group 3 from 10 to 12 and group 5 from 0 to 1
    first = BatchRecord(trackings={3: GroupProgress(10, 12), 5: GroupProgress(0, 1)})
    # when a later batch moves group 3 on to 15 and group 7 from 4 to 6
    first.extend(BatchRecord(trackings={3: GroupProgress(12, 15), 7: GroupProgress(4, 6)}))
    # then one write checks 10, 0 and 4, and records 15, 1 and 6
    assert first.trackings == {
        3: GroupProgress(10, 15),
        5: GroupProgress(0, 1),
        7: GroupProgress(4, 6),
    }


def test_two_definition_changes_never_share_a_write() -> None:
    change = ({"sequences": []}, [], datetime(2027, 5, 4, tzinfo=UTC), "c-1")
    first = BatchRecord(definition=change)
    with pytest.raises(ValueError, match="one definition change at most"):
        first.extend(BatchRecord(definition=change))
