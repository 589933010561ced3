"""A rebuild gives up part way once what it was for is gone (a new assignment, the worker
stopping): a whole store's replay takes minutes, and a first assignment is often taken back
within seconds as the group's other members join."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from types import SimpleNamespace

import orjson
import pytest

from schemas.envelope import format_time
from streams.engine_rebuild import (
    ABANDON_CHECK_EVERY,
    RebuildAbandonedError,
    Replayed,
    replay_store,
)
from streams.store import Definitions, Replayable
from tests.engine.helpers import definitions, event, sequence

T0 = datetime.fromisoformat("2027-03-01T15:00:00+00:00")
STORED = 5 * ABANDON_CHECK_EVERY


def _store() -> SimpleNamespace:
    """A store of STORED contact creations (read whole before the replay, which is the
    slow part: deciding them)."""

    def replayable(_names: list[str]) -> Iterator[Replayable]:
        for n in range(1, STORED + 1):
            at = format_time(T0 + timedelta(seconds=n))
            created = event("contact.created", at, contact_id=f"c-{n}")
            yield Replayable(n, "input", None, 1, orjson.dumps(created), 0)

    return SimpleNamespace(
        definitions_after=lambda _version: [
            Definitions(1, definitions(sequence()), (), T0 - timedelta(hours=1))
        ],
        replayable=replayable,
    )


def _replay(abandoned: Callable[[], bool]) -> Replayed:
    return replay_store(
        _store(),  # type: ignore[arg-type]
        ["p.contacts:0"],
        frozenset({0}),
        partition_of=lambda _contact: 0,
        event_clock=True,
        abandoned=abandoned,
    )


def test_a_rebuild_no_longer_wanted_stops_replaying() -> None:
    # given a rebuild whose assignment is taken back at its third look
    looks: list[int] = []

    def abandoned() -> bool:
        looks.append(1)
        return len(looks) == 3

    # when it replays, then it gives up there, two looks' worth of records in
    with pytest.raises(RebuildAbandonedError):
        _replay(abandoned)
    assert len(looks) == 3


def test_a_rebuild_still_wanted_replays_everything() -> None:
    looks: list[int] = []

    def abandoned() -> bool:
        looks.append(1)
        return False

    replayed = _replay(abandoned)

    assert replayed.inputs == STORED
    assert len(looks) == STORED // ABANDON_CHECK_EVERY
