"""The worker's batches overlap: the next is carried out while the last ones finish. A
command's outcomes leave as soon as it is done, after those of the commands before it for
the same contact; each batch's offsets are still committed in the order fetched."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
import pytest

# aiokafka ships no type information.
from aiokafka.errors import IllegalStateError  # type: ignore[import-untyped, unused-ignore]

from effects.fakes.senders import FakeSenders
from effects.ledger_memory import InMemoryLedger
from effects.ports import Delivered, EffectId, SendResult, SmsMessage, Transient
from effects.processor import EffectProcessor
from effects.retry import RetryPolicy
from effects.worker import BatchPipeline, KafkaPublisher, _WaitForBatches, consume
from tests.effects.helpers import Clock, sms

TOPIC = "dripstream.effects"
PARTITION = (TOPIC, 0)  # stands for a TopicPartition: any hashable key will do


def number(n: int) -> str:
    return f"+1646555{n:04d}"


@dataclass
class GatedSms:
    """Sends to the `held` numbers wait for `gate`; every send is noted as it begins."""

    held: set[str]
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    begun: dict[str, asyncio.Event] = field(default_factory=dict)

    def began(self, to: str) -> asyncio.Event:
        return self.begun.setdefault(to, asyncio.Event())

    async def send_sms(self, message: SmsMessage) -> SendResult:
        self.began(message.to).set()
        if message.to in self.held:
            await self.gate.wait()
        return Delivered("twilio", f"SM-{message.to}")


@dataclass(frozen=True)
class Record:
    value: bytes
    offset: int
    key: bytes | None = None
    topic: str = TOPIC
    partition: int = 0


@dataclass
class Journal:
    """What left the worker, in order: ("publish", subject) and ("commit", offsets)."""

    entries: list[tuple[str, Any]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, entry: tuple[str, Any]) -> None:
        self.entries.append(entry)
        self.changed.set()

    async def until(self, count: int) -> None:
        while len(self.entries) < count:
            self.changed.clear()
            await self.changed.wait()


@dataclass
class JournalProducer:
    journal: Journal
    fail: bool = False
    effect_ids: list[str] = field(default_factory=list)  # of the outcomes, as they left

    async def send(
        self, topic: str, value: bytes, key: bytes | None = None, headers: Any = None
    ) -> asyncio.Future[None]:
        if self.fail:
            raise ConnectionError("broker gone")
        event = orjson.loads(value)
        self.effect_ids.append(event["data"]["effect_id"])
        self.journal.add(("publish", event["subject"]))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


@dataclass
class ScriptedConsumer:
    """`getmany` hands out the scripted batches, then nothing (as a broker's timeout would)."""

    batches: list[dict[Any, list[Record]]]

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[Any, list[Record]]:
        del timeout_ms, max_records
        if self.batches:
            return self.batches.pop(0)
        await asyncio.sleep(0)
        return {}


def batch(*numbers: int) -> dict[Any, list[Record]]:
    return {
        PARTITION: [
            Record(sms(n, to=number(n)).encode(), offset=n, key=f"c-{n}".encode()) for n in numbers
        ]
    }


def pipeline_processor(sender: GatedSms) -> EffectProcessor:
    return EffectProcessor(
        ledger=InMemoryLedger(),
        senders=replace(FakeSenders().senders(), sms=sender),
        clock=Clock(),
        concurrency=4,
    )


def publisher_for(journal: Journal, *, fail: bool = False) -> KafkaPublisher:
    return KafkaPublisher(JournalProducer(journal, fail=fail), "dripstream.")


def given_a_pipeline(
    sender: GatedSms, journal: Journal, *, ahead: int, fail_publishing: bool = False
) -> BatchPipeline:
    async def commit(offsets: Mapping[Any, int]) -> None:
        journal.add(("commit", dict(offsets)))

    publisher = publisher_for(journal, fail=fail_publishing)
    return BatchPipeline(pipeline_processor(sender), publisher, commit, TOPIC, ahead=ahead)


async def test_a_hanging_send_holds_back_only_its_own_outcome_and_the_commits_after_it() -> None:
    # given a first batch whose first send hangs, and a second batch behind it
    sender = GatedSms(held={number(1)})
    journal = Journal()
    stop = asyncio.Event()
    consumer = ScriptedConsumer([batch(1, 2), batch(3)])
    pipeline = given_a_pipeline(sender, journal, ahead=8)
    worker = asyncio.create_task(consume(consumer, pipeline, asyncio.Lock(), stop, 2))
    # when the other sends are done while the first still waits
    await journal.until(2)
    # then their outcomes have left, and nothing is committed
    assert sorted(journal.entries) == [("publish", "c-2"), ("publish", "c-3")]
    # and when the hanging send returns, its outcome follows, then the commits in order
    sender.gate.set()
    await journal.until(5)
    stop.set()
    await worker
    assert journal.entries[2:] == [
        ("publish", "c-1"),
        ("commit", {PARTITION: 3}),
        ("commit", {PARTITION: 4}),
    ]
    assert pipeline.unfinished == 0


async def test_a_contacts_outcomes_leave_in_the_order_of_its_commands() -> None:
    # given two texts to one contact, in two batches, the first one's send hanging
    sender = GatedSms(held={number(1)})
    journal = Journal()
    producer = JournalProducer(journal)

    async def commit(offsets: Mapping[Any, int]) -> None:
        journal.add(("commit", dict(offsets)))

    pipeline = BatchPipeline(
        pipeline_processor(sender),
        KafkaPublisher(producer, "dripstream."),
        commit,
        TOPIC,
        ahead=8,
    )
    first = sms(1, to=number(1))
    second = sms(1, to=number(2), effect_id="fx:welcome:c-1:1:s2:1")
    pipeline.start({PARTITION: [Record(first.encode(), offset=0, key=b"c-1")]})
    pipeline.start({PARTITION: [Record(second.encode(), offset=1, key=b"c-1")]})
    # when the second is sent while the first still waits
    await sender.began(number(2)).wait()
    await asyncio.sleep(0.01)
    # then its outcome waits for the first one's
    assert producer.effect_ids == []
    sender.gate.set()
    await pipeline.drain()
    assert producer.effect_ids == ["fx:welcome:c-1:1:s1:1", "fx:welcome:c-1:1:s2:1"]
    commits = [entry for entry in journal.entries if entry[0] == "commit"]
    assert commits == [("commit", {PARTITION: 1}), ("commit", {PARTITION: 2})]


async def test_no_batch_starts_while_enough_commands_are_unfinished() -> None:
    # given a pipeline that keeps at most two commands ahead, and two hanging sends
    sender = GatedSms(held={number(1), number(2)})
    journal = Journal()
    pipeline = given_a_pipeline(sender, journal, ahead=2)
    pipeline.start(batch(1, 2))
    await sender.began(number(2)).wait()
    # when the worker asks for room for the next batch
    room = asyncio.create_task(pipeline.room())
    await asyncio.sleep(0)
    # then it waits until a command is done
    assert not room.done()
    assert pipeline.unfinished == 2
    sender.gate.set()
    await room
    await pipeline.drain()
    assert journal.entries[-1] == ("commit", {PARTITION: 3})


async def test_a_rebalance_waits_until_the_batches_in_progress_are_committed() -> None:
    # given a batch in progress whose send hangs
    sender = GatedSms(held={number(1)})
    journal = Journal()
    pipeline = given_a_pipeline(sender, journal, ahead=8)
    pipeline.start(batch(1))
    await sender.began(number(1)).wait()
    # when the partitions are revoked
    revoked = asyncio.create_task(
        _WaitForBatches(asyncio.Lock(), pipeline).on_partitions_revoked([PARTITION])
    )
    await asyncio.sleep(0)
    # then the listener returns only once the batch is published and committed
    assert not revoked.done()
    sender.gate.set()
    await revoked
    assert journal.entries == [("publish", "c-1"), ("commit", {PARTITION: 2})]


async def test_a_batch_that_cannot_be_published_stops_the_worker_uncommitted() -> None:
    # given a broker that refuses every outcome
    sender = GatedSms(held=set())
    journal = Journal()
    stop = asyncio.Event()
    consumer = ScriptedConsumer([batch(1, 2), batch(3)])
    pipeline = given_a_pipeline(sender, journal, ahead=8, fail_publishing=True)
    # when the worker runs, then it stops with the error, having committed nothing
    with pytest.raises(ConnectionError, match="broker gone"):
        await consume(consumer, pipeline, asyncio.Lock(), stop, 2)
    assert journal.entries == []
    assert pipeline.unfinished == 0


async def test_a_batch_over_two_partitions_commits_past_the_last_record_of_each() -> None:
    sender = GatedSms(held=set())
    journal = Journal()
    pipeline = given_a_pipeline(sender, journal, ahead=8)
    other = (TOPIC, 1)
    pipeline.start(
        {
            PARTITION: [Record(sms(4, to=number(4)).encode(), offset=9)],
            other: [Record(sms(5, to=number(5)).encode(), offset=0, partition=1)],
        }
    )
    await pipeline.drain()
    assert journal.entries[-1] == ("commit", {PARTITION: 10, other: 1})


async def test_a_commit_refused_after_a_rebalance_leaves_the_worker_running() -> None:
    # given partitions that went to another member while their batch was carried out
    sender = GatedSms(held=set())
    journal = Journal()

    async def refused(offsets: Mapping[Any, int]) -> None:
        raise IllegalStateError(f"Partition {next(iter(offsets))} is not assigned")

    pipeline = BatchPipeline(
        pipeline_processor(sender), publisher_for(journal), refused, TOPIC, ahead=8
    )
    # when the batch is done, then its outcomes left and the worker goes on
    pipeline.start(batch(1))
    await pipeline.drain()
    await pipeline.room()
    assert journal.entries == [("publish", "c-1")]


@dataclass
class DownFirst:
    """A provider that refuses (for now) the first `down` tries, then takes every send."""

    down: int
    tries: list[str] = field(default_factory=list)

    async def send_sms(self, message: SmsMessage) -> SendResult:
        self.tries.append(message.to)
        if len(self.tries) <= self.down:
            return Transient("connection refused")
        return Delivered("twilio", f"SM-{message.to}")


@pytest.mark.parametrize("ahead", [1, 8])
async def test_a_stop_leaves_a_send_to_retry_to_the_next_processor_instead_of_waiting(
    ahead: int,
) -> None:
    # given a provider down for the first try, and a backoff of an hour before the next
    # (`ahead` 1: the pipeline is full, its loop waits for a send slot, as when a provider
    # is down and every slot waits out a backoff)
    provider = DownFirst(down=1)
    ledger = InMemoryLedger()
    journal = Journal()

    def processor() -> EffectProcessor:
        return EffectProcessor(
            ledger=ledger,
            senders=replace(FakeSenders().senders(), sms=provider),
            clock=Clock(),
            retry=RetryPolicy(base_seconds=3600, cap_seconds=3600),
            rand=lambda: 1.0,
        )

    async def commit(offsets: Mapping[Any, int]) -> None:
        journal.add(("commit", dict(offsets)))

    pipeline = BatchPipeline(processor(), publisher_for(journal), commit, TOPIC, ahead=ahead)
    stop = asyncio.Event()
    running = asyncio.create_task(
        consume(ScriptedConsumer([batch(1), batch(2)]), pipeline, asyncio.Lock(), stop, 10)
    )
    tried = 2 if ahead > 1 else 1  # c-1 refused (waiting to retry); c-2 tried unless full
    async with asyncio.timeout(5):
        while len(provider.tries) < tried:
            await asyncio.sleep(0.01)
    # when the processor is told to stop
    stop.set()
    async with asyncio.timeout(5):  # not the hour of the backoff
        await running
    # then nothing was committed: the batch of the send to retry, and the one after it
    assert [entry for entry in journal.entries if entry[0] == "commit"] == []
    entry = await ledger.get(EffectId("fx:welcome:c-1:1:s1:1"))
    assert entry is not None
    assert entry.status == "pending"
    # and the next processor, given the command again, sends it once
    again = await processor().handle(sms(1, to=number(1)))
    assert [event.type for event in again] == ["effect.sent"]
    assert provider.tries[0] == provider.tries[-1] == number(1)
    assert provider.tries.count(number(1)) == 2


@dataclass
class StoppedWhileWaiting:
    """`getmany` during which the worker is asked to stop, and records arrive meanwhile."""

    stop: asyncio.Event

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[Any, list[Record]]:
        del timeout_ms, max_records
        self.stop.set()  # SIGTERM while the consumer waits for records
        return batch(1)


async def test_a_stop_asked_while_waiting_for_records_ends_cleanly_and_starts_nothing() -> None:
    # given a worker waiting on the broker when it is told to stop, and records arriving
    journal = Journal()
    stop = asyncio.Event()
    pipeline = given_a_pipeline(GatedSms(held=set()), journal, ahead=8)
    # when the wait returns them
    await consume(StoppedWhileWaiting(stop), pipeline, asyncio.Lock(), stop, 2)
    # then the loop ends without an error, nothing is sent or committed: the records are
    # read again by whoever takes the partition
    assert journal.entries == []
