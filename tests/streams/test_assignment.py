"""While a sequence spans contacts (a throttle, a round robin) the group gives every partition
to one worker; else the range assignor spreads them (streams/assignment.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.coordinator.assignors.range import RangePartitionAssignor  # type: ignore[import-untyped]
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
    members = _members(a=MemberState(False), b=MemberState(False))
    assert one_worker_assignment(CLUSTER.partitions_for_topic, members) is None


def test_one_member_needing_one_worker_gives_all_to_the_lowest_member_id() -> None:
    members = _members(c=MemberState(False), b=MemberState(False), d=MemberState(True))
    assert one_worker_assignment(CLUSTER.partitions_for_topic, members) == {
        "b": {"p.calls": [0, 1, 2, 3], "p.contacts": [0, 1, 2, 3]},
        "c": {},
        "d": {},
    }


@pytest.mark.parametrize(
    ("user_data", "state"),
    [
        (b"", MemberState(False)),
        (b"not json", MemberState(False)),
        (b"[1]", MemberState(False)),
        (b'{"one_worker": "yes"}', MemberState(False)),
        (b'{"one_worker": true, "later": 3}', MemberState(True)),
    ],
)
def test_what_a_member_tells_is_read_warily(user_data: bytes, state: MemberState) -> None:
    assert MemberState.decode(user_data) == state


def _join(told: MemberState) -> Any:
    assignor = range_or_one_assignor(lambda: told)
    encoded = assignor.metadata(TOPICS).encode()
    return ConsumerProtocolMemberMetadata.decode(encoded)


def test_the_aiokafka_assignor_spreads_by_range_when_none_needs_one_worker() -> None:
    assignor = range_or_one_assignor(lambda: MemberState(False))
    members = {"a": _join(MemberState(False)), "b": _join(MemberState(False))}
    got = {m: a.assignment for m, a in assignor.assign(CLUSTER, members).items()}
    assert assignor.name == PROTOCOL
    assert got == {
        "a": [("p.calls", [0, 1]), ("p.contacts", [0, 1])],
        "b": [("p.calls", [2, 3]), ("p.contacts", [2, 3])],
    }


def test_the_aiokafka_assignor_gives_all_to_one_when_one_needs_it() -> None:
    assignor = range_or_one_assignor(lambda: MemberState(False))
    members = {"b": _join(MemberState(True)), "a": _join(MemberState(False))}
    got = {m: a.assignment for m, a in assignor.assign(CLUSTER, members).items()}
    assert got == {"a": [("p.calls", [0, 1, 2, 3]), ("p.contacts", [0, 1, 2, 3])], "b": []}


def test_workers_of_the_plain_range_assignor_share_its_protocol() -> None:
    # given a worker of a version before this one, which offers aiokafka's range assignor
    older = ConsumerProtocolMemberMetadata.decode(RangePartitionAssignor.metadata(TOPICS).encode())
    assignor = range_or_one_assignor(lambda: MemberState(False))
    # then this one offers the same protocol (one protocol: see streams/assignment.py)
    assert assignor.name == RangePartitionAssignor.name == "range"
    # and leading, reads the older one's join as needing nothing
    members = {"a": older, "b": _join(MemberState(False))}
    got = {m: a.assignment for m, a in assignor.assign(CLUSTER, members).items()}
    assert got == {
        "a": [("p.calls", [0, 1]), ("p.contacts", [0, 1])],
        "b": [("p.calls", [2, 3]), ("p.contacts", [2, 3])],
    }
