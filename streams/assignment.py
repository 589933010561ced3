"""Which worker takes which partitions: spread by range, or all to one when sequences need it.

A throttle's places, a round robin's turns and an owner's notices (more than 20 in a
minute are one summary) span contacts, so partitions (`Sequence.spans_contacts`). Workers
each holding a share would each allow `throttle_per_minute` a minute, keep their own turn
and count their own notices, and a worker rebuilt with some of the partitions would decide
their inputs again without the others' places and turns, placing steps and choosing owners
otherwise than they were published. So once any sequence spans contacts, every partition
goes to one worker and the others stand by: a takeover rebuilds every partition, and
decides them as they were published. Once, for good: a rebuild replays every stored input
(a snapshot stands only for the partitions it was taken with), those decided under a
throttle since removed too.

Each worker says in its join metadata whether its definitions need one worker; the group's
leader decides for all. Nothing else goes in the metadata: a member joining late with other
metadata than at its last join makes the broker start another rebalance.

The assignor goes by the range assignor's protocol name, with its metadata's layout (the
subscribed topics, then the user data, which a range leader does not read), and is the only
one a worker offers: workers of a version before it (plain range) share the group, their
leader spreading the partitions as before. Offering two protocols, as this did first, met
aiokafka 0.14 sending a JoinGroup per protocol as it builds the list (one with the first,
one with both): the broker took each second request for changed metadata and rebalanced
again, and two workers joining together could go on so for minutes (a rebalance storm).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka.coordinator.assignors.range import RangePartitionAssignor  # type: ignore[import-untyped]
from aiokafka.coordinator.protocol import (  # type: ignore[import-untyped]
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)

__all__ = ["PROTOCOL", "MemberState", "one_worker_assignment", "range_or_one_assignor"]

PROTOCOL = RangePartitionAssignor.name  # "range": see the module's notes
VERSION = 0


@dataclass(frozen=True, slots=True)
class MemberState:
    """What a worker tells the group as it joins."""

    one_worker: bool  # a sequence of its definitions spans contacts, now or before

    def encode(self) -> bytes:
        return orjson.dumps({"one_worker": self.one_worker})

    @classmethod
    def decode(cls, user_data: bytes) -> MemberState:
        """A member of another version, or with data this one cannot read, tells nothing."""
        try:
            told = orjson.loads(user_data) if user_data else {}
        except orjson.JSONDecodeError:
            told = {}
        return cls(isinstance(told, dict) and told.get("one_worker") is True)


def one_worker_assignment(
    partitions_of: Callable[[str], Iterable[int] | None],
    members: Mapping[str, tuple[list[str], MemberState]],
) -> dict[str, dict[str, list[int]]] | None:
    """Every partition of the subscribed topics to one member, the lowest id, when any
    member's definitions need one worker; None when none do (then the range assignor
    spreads them). Every member rebuilds at every assignment anyway: keeping the holder
    would save no work."""
    if not any(state.one_worker for _, state in members.values()):
        return None
    chosen = min(members)
    assignment: dict[str, dict[str, list[int]]] = {member: {} for member in members}
    for topic in sorted(members[chosen][0]):
        partitions = partitions_of(topic)
        if partitions is not None:
            assignment[chosen][topic] = sorted(partitions)
    return assignment


def range_or_one_assignor(state: Callable[[], MemberState]) -> type[Any]:
    """An aiokafka assignor class (aiokafka calls its class methods) whose join metadata is
    what `state` says at each join."""

    class RangeOrOne(RangePartitionAssignor):  # type: ignore[misc]
        name = PROTOCOL
        version = VERSION

        @classmethod
        def metadata(cls, topics: Iterable[str]) -> Any:
            return ConsumerProtocolMemberMetadata(cls.version, list(topics), state().encode())

        @classmethod
        def assign(cls, cluster: Any, members: Mapping[str, Any]) -> dict[str, Any]:
            told = {
                member: (list(meta.subscription), MemberState.decode(meta.user_data))
                for member, meta in members.items()
            }
            whole = one_worker_assignment(cluster.partitions_for_topic, told)
            if whole is None:
                return dict(super().assign(cluster, members))
            return {
                member: ConsumerProtocolMemberAssignment(cls.version, sorted(topics.items()), b"")
                for member, topics in whole.items()
            }

    return RangeOrOne
