"""The input topics checked before anything is published (ops/input_topics.py), against a
fake broker whose topics and whose making of topics each test sets."""

from __future__ import annotations

import asyncio

import pytest

from ops import topics_cli
from ops.input_topics import (
    InputTopicsNotReadyError,
    ensure_input_topics,
    input_topics_problem,
)
from schemas.registry import INPUT_TOPICS

PREFIX = "p."


class FakeCluster:
    def __init__(self, counts: dict[str, int]) -> None:
        self.counts = counts

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        count = self.counts.get(topic)
        return None if count is None else set(range(count))


class FakeClient:
    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker

    async def fetch_all_metadata(self) -> FakeCluster:
        answer = FakeCluster(dict(self.broker.topics))
        self.broker.topics.update(self.broker.being_made)  # made by the next look
        return answer


class FakeBroker:
    """A producer on a broker with `topics`; asked for one it lacks, it makes it with
    `default_count` partitions when `makes_topics`, else never answers."""

    def __init__(
        self,
        topics: dict[str, int],
        *,
        makes_topics: bool,
        default_count: int = 1,
        being_made: dict[str, int] | None = None,
    ) -> None:
        self.topics = dict(topics)
        self.being_made = being_made or {}  # by another client: there from the second look
        self.makes_topics = makes_topics
        self.default_count = default_count
        self.asked: list[str] = []
        self.client = FakeClient(self)

    async def partitions_for(self, topic: str) -> set[int]:
        self.asked.append(topic)
        if topic not in self.topics:
            if not self.makes_topics:
                await asyncio.Event().wait()  # aiokafka waits for the metadata
            self.topics[topic] = self.default_count
        return set(range(self.topics[topic]))


def _all(count: int) -> dict[str, int]:
    return {PREFIX + name: count for name in INPUT_TOPICS}


def _ensure(broker: FakeBroker) -> None:
    asyncio.run(ensure_input_topics(broker, PREFIX, wait_s=0.05, settle_s=0.3))


def test_topics_that_all_exist_with_one_count_are_taken_as_they_are() -> None:
    broker = FakeBroker(_all(3), makes_topics=True)
    _ensure(broker)
    assert broker.asked == []  # read from the cluster's metadata, none asked for


def test_none_existing_are_all_asked_for_so_a_broker_that_makes_topics_makes_every_one() -> None:
    broker = FakeBroker({}, makes_topics=True, default_count=2)
    _ensure(broker)
    assert sorted(broker.asked) == sorted(PREFIX + name for name in INPUT_TOPICS)
    assert broker.topics == _all(2)


def test_a_broker_that_makes_no_topics_is_said_to_after_the_wait_rather_than_five_minutes() -> None:
    broker = FakeBroker({}, makes_topics=False)
    with pytest.raises(InputTopicsNotReadyError) as raised:
        _ensure(broker)
    said = str(raised.value)
    assert "the input topics do not exist and the broker did not make them within 0.05 s" in said
    assert f"{PREFIX}contacts, {PREFIX}calls" in said
    assert "auto.create.topics.enable" in said
    assert said.endswith(f"make them first (`dripstream topics create --topic-prefix {PREFIX}`)")


def test_some_missing_are_refused_without_making_any() -> None:
    # given contacts made by hand with 4 partitions, the other inputs not made
    broker = FakeBroker({PREFIX + "contacts": 4}, makes_topics=True)
    with pytest.raises(InputTopicsNotReadyError) as raised:
        _ensure(broker)
    # then the others are named, with the count to make them with, and none is asked for
    # (the broker would make it at its default count)
    assert f"input topics missing: {PREFIX}calls, {PREFIX}messages" in str(raised.value)
    assert f"`dripstream topics create --partitions 4 --topic-prefix {PREFIX}`" in str(raised.value)
    assert broker.asked == []
    assert broker.topics == {PREFIX + "contacts": 4}


def test_some_missing_that_another_client_is_making_are_waited_for() -> None:
    # given a worker's first subscription making the input topics this moment: the first
    # look sees some of them
    rest = {name: 1 for name in _all(1) if not name.endswith("contacts")}
    broker = FakeBroker({PREFIX + "contacts": 1}, makes_topics=False, being_made=rest)
    # then the next look sees them all, and they are taken
    _ensure(broker)
    assert broker.topics == _all(1)
    assert broker.asked == []


def test_input_topics_with_different_counts_are_refused() -> None:
    broker = FakeBroker({**_all(3), PREFIX + "calls": 2}, makes_topics=True)
    with pytest.raises(InputTopicsNotReadyError) as raised:
        _ensure(broker)
    assert "not co-partitioned" in str(raised.value)
    assert f"{PREFIX}calls 2" in str(raised.value)


def test_topics_of_another_prefix_do_not_count() -> None:
    broker = FakeBroker({"other." + name: 3 for name in INPUT_TOPICS}, makes_topics=True)
    _ensure(broker)
    assert broker.topics == {**{"other." + name: 3 for name in INPUT_TOPICS}, **_all(1)}


def test_a_worker_waits_for_input_topics_produce_is_making_before_it_refuses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a broker where `produce` is making the input topics: the first look finds two
    looks = [{PREFIX + "contacts": 3, PREFIX + "calls": 3}, _all(3)]

    async def counts(_bootstrap: str, _prefix: str) -> dict[str, int]:
        return looks.pop(0) if len(looks) > 1 else looks[0]

    monkeypatch.setattr(topics_cli, "input_partition_counts", counts)
    # then the next look finds all six, co-partitioned: no problem
    assert asyncio.run(input_topics_problem("x", PREFIX, settle_s=2.0)) is None


def test_a_worker_refuses_input_topics_still_missing_after_the_settling_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def counts(_bootstrap: str, _prefix: str) -> dict[str, int]:
        return {PREFIX + "contacts": 4}

    monkeypatch.setattr(topics_cli, "input_partition_counts", counts)
    problem = asyncio.run(input_topics_problem("x", PREFIX, settle_s=0.3))
    assert problem is not None
    assert problem.startswith(f"input topics missing: {PREFIX}calls")
