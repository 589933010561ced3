"""While a sequence spans contacts (a throttle, a round robin) the group gives every partition
to one worker; else the range assignor spreads them (streams/assignment.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata  # type: ignore[import-untyped]

from streams.assignment import (
    PROTOCOL,
    MemberState,
    one_worker_assignment,
    range_or_one_assignor,
)

TOPICS = ["p.contacts", "p.calls"]
CLUSTER = SimpleNamespace(
    partitions_for_topic=lambda topic: {0, 1, 2, 3} if topic in TOPICS else None
)


def _members(**states: MemberState) -> dict[str, Any]:
    return {member: (TOPICS, state) for member, state in states.items()}


def test_when_no_member_needs_one_worker_nothing_is_decided_here() -> None:
    members = _members(a=MemberState(False, 4), b=MemberState(False, 0))
    assert one_worker_assignment(CLUSTER.partitions_for_topic, members) is None


def test_one_member_needing_one_worker_gives_all_to_the_one_holding_most() -> None:
    members = _members(a=MemberState(False, 0), b=MemberState(True, 4), c=MemberState(False, 0))
    assert one_worker_assignment(CLUSTER.partitions_for_topic, members) == {
        "a": {},
        "b": {"p.calls": [0, 1, 2, 3], "p.contacts": [0, 1, 2, 3]},
        "c": {},
    }


def test_a_tie_goes_to_the_lowest_member_id() -> None:
    members = _members(zed=MemberState(True, 2), amy=MemberState(True, 2), bob=MemberState(True, 0))
    whole = one_worker_assignment(CLUSTER.partitions_for_topic, members)
    assert whole is not None
    assert [m for m, topics in whole.items() if topics] == ["amy"]


@pytest.mark.parametrize(
    ("user_data", "state"),
    [
        (b"", MemberState(False, 0)),
        (b"not json", MemberState(False, 0)),
        (b"[1]", MemberState(False, 0)),
        (b'{"one_worker": "yes", "held": "3"}', MemberState(False, 0)),
        (b'{"one_worker": true, "held": 3}', MemberState(True, 3)),
    ],
)
def test_what_a_member_tells_is_read_warily(user_data: bytes, state: MemberState) -> None:
    assert MemberState.decode(user_data) == state


def _join(told: MemberState) -> Any:
    assignor = range_or_one_assignor(lambda: told)
    encoded = assignor.metadata(TOPICS).encode()
    return ConsumerProtocolMemberMetadata.decode(encoded)


def test_the_aiokafka_assignor_spreads_by_range_when_none_needs_one_worker() -> None:
    assignor = range_or_one_assignor(lambda: MemberState(False, 0))
    members = {"a": _join(MemberState(False, 4)), "b": _join(MemberState(False, 0))}
    got = {m: a.assignment for m, a in assignor.assign(CLUSTER, members).items()}
    assert assignor.name == PROTOCOL
    assert got == {
        "a": [("p.calls", [0, 1]), ("p.contacts", [0, 1])],
        "b": [("p.calls", [2, 3]), ("p.contacts", [2, 3])],
    }


def test_the_aiokafka_assignor_gives_all_to_one_when_one_needs_it() -> None:
    assignor = range_or_one_assignor(lambda: MemberState(False, 0))
    members = {"a": _join(MemberState(False, 0)), "b": _join(MemberState(True, 2))}
    got = {m: a.assignment for m, a in assignor.assign(CLUSTER, members).items()}
    assert got == {"a": [], "b": [("p.calls", [0, 1, 2, 3]), ("p.contacts", [0, 1, 2, 3])]}
