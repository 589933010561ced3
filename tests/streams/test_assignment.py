"""While a sequence has a throttle the group gives every partition to one worker; else the
range assignor spreads them (streams/assignment.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata  # type: ignore[import-untyped]

from streams.assignment import PROTOCOL, MemberState, one_when_throttled, whole_group_assignor

TOPICS = ["p.contacts", "p.calls"]
CLUSTER = SimpleNamespace(
    partitions_for_topic=lambda topic: {0, 1, 2, 3} if topic in TOPICS else None
)


def _members(**states: MemberState) -> dict[str, Any]:
    return {member: (TOPICS, state) for member, state in states.items()}


def test_without_a_throttle_nothing_is_decided_here() -> None:
    members = _members(a=MemberState(False, 4), b=MemberState(False, 0))
    assert one_when_throttled(CLUSTER.partitions_for_topic, members) is None


def test_one_member_with_a_throttle_gives_all_to_the_one_holding_most() -> None:
    members = _members(a=MemberState(False, 0), b=MemberState(True, 4), c=MemberState(False, 0))
    assert one_when_throttled(CLUSTER.partitions_for_topic, members) == {
        "a": {},
        "b": {"p.calls": [0, 1, 2, 3], "p.contacts": [0, 1, 2, 3]},
        "c": {},
    }


def test_a_tie_goes_to_the_lowest_member_id() -> None:
    members = _members(zed=MemberState(True, 2), amy=MemberState(True, 2), bob=MemberState(True, 0))
    whole = one_when_throttled(CLUSTER.partitions_for_topic, members)
    assert whole is not None
    assert [m for m, topics in whole.items() if topics] == ["amy"]


@pytest.mark.parametrize(
    ("user_data", "state"),
    [
        (b"", MemberState(False, 0)),
        (b"not json", MemberState(False, 0)),
        (b"[1]", MemberState(False, 0)),
        (b'{"throttled": "yes", "held": "3"}', MemberState(False, 0)),
        (b'{"throttled": true, "held": 3}', MemberState(True, 3)),
    ],
)
def test_what_a_member_tells_is_read_warily(user_data: bytes, state: MemberState) -> None:
    assert MemberState.decode(user_data) == state


def _join(told: MemberState) -> Any:
    assignor = whole_group_assignor(lambda: told)
    encoded = assignor.metadata(TOPICS).encode()
    return ConsumerProtocolMemberMetadata.decode(encoded)


def test_the_aiokafka_assignor_spreads_by_range_without_a_throttle() -> None:
    assignor = whole_group_assignor(lambda: MemberState(False, 0))
    members = {"a": _join(MemberState(False, 4)), "b": _join(MemberState(False, 0))}
    got = {m: a.assignment for m, a in assignor.assign(CLUSTER, members).items()}
    assert assignor.name == PROTOCOL
    assert got == {
        "a": [("p.calls", [0, 1]), ("p.contacts", [0, 1])],
        "b": [("p.calls", [2, 3]), ("p.contacts", [2, 3])],
    }


def test_the_aiokafka_assignor_gives_all_to_one_under_a_throttle() -> None:
    assignor = whole_group_assignor(lambda: MemberState(False, 0))
    members = {"a": _join(MemberState(False, 0)), "b": _join(MemberState(True, 2))}
    got = {m: a.assignment for m, a in assignor.assign(CLUSTER, members).items()}
    assert got == {"a": [], "b": [("p.calls", [0, 1, 2, 3]), ("p.contacts", [0, 1, 2, 3])]}
