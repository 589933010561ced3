"""The ledger port's contract, run against the in-memory fake and PostgreSQL alike."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import psycopg
import pytest

from effects.ledger import FAILED, IN_FLIGHT, PENDING, SENT, UNDELIVERED, UNKNOWN, Ledger
from effects.ledger_memory import InMemoryLedger
from effects.ledger_postgres import PostgresLedger
from effects.ports import EffectId
from tests.effects.helpers import T0, sms

FX = EffectId("fx:welcome:c-1:1:s1:1")


@dataclass
class Harness:
    ledger: Ledger
    # Simulates a crash of the current processor and the start of a new one on the same
    # rows; returns the new ledger.
    restart: Callable[[], Awaitable[Ledger]]
    # Another processor that is alive at the same time.
    sibling: Callable[[], Awaitable[Ledger]]


@pytest.fixture(params=["memory", pytest.param("postgres", marks=pytest.mark.postgres)])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    opened: list[Ledger] = []
    if request.param == "memory":
        memory = InMemoryLedger("p-1")

        async def restart_memory() -> Ledger:
            return memory.restarted("p-2")

        async def sibling_memory() -> Ledger:
            return InMemoryLedger("p-3", memory._store)

        yield Harness(memory, restart_memory, sibling_memory)
        return
    url = request.getfixturevalue("clean_database")

    async def open_ledger(owner: str) -> Ledger:
        ledger = PostgresLedger(url, owner, pool_size=2)
        await ledger.open()
        opened.append(ledger)
        return ledger

    first = await open_ledger("p-1")

    async def restart_postgres() -> Ledger:
        await first.close()  # its lease is gone, as when the process dies
        return await open_ledger("p-2")

    async def sibling_postgres() -> Ledger:
        return await open_ledger("p-3")

    yield Harness(first, restart_postgres, sibling_postgres)
    for ledger in opened:
        await ledger.close()


async def status(ledger: Ledger, effect_id: EffectId = FX) -> str | None:
    entry = await ledger.get(effect_id)
    return entry.status if entry else None


async def test_a_new_command_is_claimed_once(harness: Harness) -> None:
    ledger = harness.ledger
    assert await ledger.claim(FX, sms(), T0) is True
    assert await status(ledger) == PENDING
    assert await ledger.begin(FX, T0) == 1
    # when the same command comes again, whatever happened since
    assert await ledger.claim(FX, sms(), T0) is False
    await ledger.record_sent(FX, "twilio", "SM1", T0)
    assert await ledger.claim(FX, sms(), T0) is False
    entry = await ledger.get(FX)
    assert entry is not None
    assert (entry.status, entry.provider, entry.provider_id, entry.attempts) == (
        SENT,
        "twilio",
        "SM1",
        1,
    )
    assert entry.command["data"]["effect_id"] == FX
    assert entry.context["contact_id"] == "c-1"


async def test_a_sent_effect_keeps_the_recipients_it_missed(harness: Harness) -> None:
    ledger = harness.ledger
    await ledger.claim(FX, sms(), T0)
    await ledger.begin(FX, T0)
    await ledger.record_sent(FX, "twilio", "SM1", T0, "+12125550009: invalid number")
    entry = await (await harness.restart()).get(FX)
    assert entry is not None
    assert (entry.status, entry.error, entry.code) == (
        SENT,
        "+12125550009: invalid number",
        UNDELIVERED,
    )


async def test_a_claimed_but_never_attempted_command_may_be_taken_again(harness: Harness) -> None:
    # given a command claimed just before a crash
    assert await harness.ledger.claim(FX, sms(), T0)
    # when it is redelivered, then it may go on: nothing was sent
    assert await harness.ledger.claim(FX, sms(), T0) is True


async def test_only_one_attempt_can_be_in_flight(harness: Harness) -> None:
    await harness.ledger.claim(FX, sms(), T0)
    other = await harness.sibling()
    assert await harness.ledger.begin(FX, T0) == 1
    assert await other.begin(FX, T0) is None
    assert await harness.ledger.begin(FX, T0) is None


async def test_concurrent_attempts_on_one_effect_let_exactly_one_through(
    harness: Harness,
) -> None:
    # given one command delivered three times at once, to two processors
    other = await harness.sibling()
    claims = await asyncio.gather(
        harness.ledger.claim(FX, sms(), T0),
        harness.ledger.claim(FX, sms(), T0),
        other.claim(FX, sms(), T0),
    )
    # at least one may go on (in PostgreSQL a claimer racing the inserter's commit may be
    # told no: safe, the inserter goes on)
    assert any(claims)
    # when all of them begin at once (in PostgreSQL: in one batched statement)
    begun = await asyncio.gather(
        harness.ledger.begin(FX, T0), harness.ledger.begin(FX, T0), other.begin(FX, T0)
    )
    # then exactly one owns the attempt
    assert sorted(begun, key=lambda a: a is None) == [1, None, None]


async def test_many_effects_move_together(harness: Harness) -> None:
    ids = [EffectId(f"fx:{n}") for n in range(50)]
    ledger = harness.ledger
    assert all(await asyncio.gather(*(ledger.claim(i, sms(effect_id=i), T0) for i in ids)))
    assert await asyncio.gather(*(ledger.begin(i, T0) for i in ids)) == [1] * 50
    await asyncio.gather(
        *(ledger.record_sent(i, "twilio", f"SM{n}", T0) for n, i in enumerate(ids[:25])),
        *(ledger.record_failed(i, "no", "21211", T0) for i in ids[25:40]),
        *(ledger.record_unknown(i, "timeout", T0) for i in ids[40:]),
    )
    entries = [await ledger.get(i) for i in ids]
    assert [e.status for e in entries if e] == ["sent"] * 25 + ["failed"] * 15 + ["unknown"] * 10
    assert [e.provider_id for e in entries[:3] if e] == ["SM0", "SM1", "SM2"]


async def test_a_refused_attempt_goes_back_to_pending_and_counts(harness: Harness) -> None:
    ledger = harness.ledger
    await ledger.claim(FX, sms(), T0)
    await ledger.begin(FX, T0)
    await ledger.release(FX, "429", T0)
    assert await status(ledger) == PENDING
    assert await ledger.begin(FX, T0) == 2


async def test_a_release_not_counted_gives_the_attempt_back(harness: Harness) -> None:
    # refused credentials: the operator's error, so the command keeps all its tries
    ledger = harness.ledger
    await ledger.claim(FX, sms(), T0)
    await ledger.begin(FX, T0)
    await ledger.release(FX, "twilio 401", T0, counted=False)
    entry = await ledger.get(FX)
    assert entry is not None
    assert (entry.status, entry.attempts, entry.error) == (PENDING, 0, "twilio 401")
    assert await ledger.begin(FX, T0) == 1


async def test_failures_and_unknowns_are_recorded(harness: Harness) -> None:
    ledger = harness.ledger
    second = EffectId("fx:2")
    await ledger.claim(FX, sms(), T0)
    await ledger.begin(FX, T0)
    await ledger.record_failed(FX, "invalid number", "21211", T0)
    await ledger.claim(second, sms(2, effect_id=second), T0)
    await ledger.begin(second, T0)
    await ledger.record_unknown(second, "read timeout", T0)
    failed, unknown = await ledger.get(FX), await ledger.get(second)
    assert failed is not None
    assert unknown is not None
    assert (failed.status, failed.error, failed.code) == (FAILED, "invalid number", "21211")
    assert (unknown.status, unknown.error) == (UNKNOWN, "read timeout")


async def test_an_unanswered_send_a_callback_settled_meanwhile_stays_sent(
    harness: Harness,
) -> None:
    # given a send in flight whose provider's status callback came before its answer
    ledger = harness.ledger
    await ledger.claim(FX, sms(), T0)
    await ledger.begin(FX, T0)
    assert await ledger.reconcile(FX, "twilio", "SM1", "sent", T0) is not None
    # when the request then goes unanswered: the row is not made unknown, and says so
    assert await ledger.record_unknown(FX, "read timeout", T0) is False
    settled = await ledger.get(FX)
    assert settled is not None
    assert settled.status == SENT
    # while a row still in flight is
    second = EffectId("fx:2")
    await ledger.claim(second, sms(2, effect_id=second), T0)
    await ledger.begin(second, T0)
    assert await ledger.record_unknown(second, "read timeout", T0) is True


async def test_restart_turns_the_dead_processors_in_flight_rows_into_unknown(
    harness: Harness,
) -> None:
    # given a send in flight when the processor died, and one finished
    done = EffectId("fx:done")
    await harness.ledger.claim(FX, sms(), T0)
    await harness.ledger.begin(FX, T0)
    await harness.ledger.claim(done, sms(2, effect_id=done), T0)
    await harness.ledger.begin(done, T0)
    await harness.ledger.record_sent(done, "twilio", "SM2", T0)
    # when a new processor starts
    restarted = await harness.restart()
    recovered = await restarted.recover_abandoned(T0)
    # then only the in-flight row is unknown, and it is never claimable again
    assert [entry.effect_id for entry in recovered] == [FX]
    assert recovered[0].status == UNKNOWN
    assert await status(restarted) == UNKNOWN
    assert await status(restarted, done) == SENT
    assert await restarted.claim(FX, sms(), T0) is False
    assert await restarted.recover_abandoned(T0) == []


async def test_a_living_processors_calls_are_left_alone(harness: Harness) -> None:
    await harness.ledger.claim(FX, sms(), T0)
    await harness.ledger.begin(FX, T0)
    other = await harness.sibling()
    assert await other.recover_abandoned(T0) == []
    assert await status(other) == IN_FLIGHT


async def test_a_lease_that_is_held_is_kept_as_it_is(harness: Harness) -> None:
    assert await harness.ledger.keep_lease() is False


@pytest.mark.postgres
async def test_a_lease_lost_with_its_connection_is_taken_again(clean_database: str) -> None:
    # given a processor with a send in flight, and a sibling
    ledger = PostgresLedger(clean_database, "p-1", pool_size=2)
    sibling = PostgresLedger(clean_database, "p-3", pool_size=2)
    await ledger.open()
    await sibling.open()
    try:
        await ledger.claim(FX, sms(), T0)
        await ledger.begin(FX, T0)
        # when PostgreSQL drops the lease's connection (a restart, a failover)
        async with await psycopg.AsyncConnection.connect(clean_database, autocommit=True) as admin:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks"
                " WHERE locktype = 'advisory' AND objid::int = hashtext('p-1')"
            )
        # then the processor notices and takes its lease again
        assert await ledger.keep_lease() is True
        assert await ledger.keep_lease() is False
        # and the sibling's recovery leaves its send alone, as that of a living processor
        assert await sibling.recover_abandoned(T0) == []
        assert await status(sibling) == IN_FLIGHT
    finally:
        await ledger.close()
        await sibling.close()


@pytest.mark.postgres
async def test_after_postgresql_dropped_all_its_connections_the_ledger_works_on(
    clean_database: str,
) -> None:
    ledger = PostgresLedger(f"{clean_database}&application_name=fx-dropped", "p-1", pool_size=2)
    await ledger.open()
    try:
        await ledger.claim(FX, sms(), T0)
        # when PostgreSQL drops every connection of the processor (a restart)
        async with await psycopg.AsyncConnection.connect(clean_database, autocommit=True) as admin:
            cursor = await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'fx-dropped'"
            )
            assert len(await cursor.fetchall()) >= 2  # the pool's and the lease's
        # then the next statements go on new connections, and the lease is taken again
        assert await ledger.begin(FX, T0) is not None
        assert await ledger.keep_lease() is True
    finally:
        await ledger.close()


async def test_a_status_callback_reconciles_an_unknown_row(harness: Harness) -> None:
    await harness.ledger.claim(FX, sms(), T0)
    await harness.ledger.begin(FX, T0)
    await harness.ledger.record_unknown(FX, "timeout", T0)
    reconciled = await harness.ledger.reconcile(FX, "twilio", "SM9", "delivered", T0)
    assert reconciled is not None
    assert (reconciled.status, reconciled.provider_id) == (SENT, "SM9")
    # a second callback changes nothing
    assert await harness.ledger.reconcile(FX, "twilio", "SM9", "delivered", T0) is None


async def test_the_first_agent_to_connect_wins(harness: Harness) -> None:
    await harness.ledger.claim(FX, sms(), T0)
    assert await harness.ledger.mark_connected(FX, "CA1") is True
    assert await harness.ledger.mark_connected(FX, "CA1") is True
    assert await harness.ledger.mark_connected(FX, "CA2") is False
    assert await harness.ledger.connected_by(FX) == "CA1"


async def test_nobody_is_connected_until_marked(harness: Harness) -> None:
    await harness.ledger.claim(FX, sms(), T0)
    assert await harness.ledger.connected_by(FX) is None
    assert await harness.ledger.connected_by(EffectId("fx:never")) is None


HOUSEHOLD = "+12125550101"


async def attempted(ledger: Ledger, n: int, at: datetime) -> EffectId:
    """An SMS to HOUSEHOLD for contact c-`n`, decided and begun at `at`."""
    effect_id = EffectId(f"fx:c-{n}")
    await ledger.claim(effect_id, replace(sms(n, to=HOUSEHOLD, effect_id=effect_id), time=at), at)
    assert await ledger.begin(effect_id, at) is not None
    return effect_id


async def test_a_reply_goes_to_the_latest_send_not_to_an_older_one_a_callback_touched_later(
    harness: Harness,
) -> None:
    # given an SMS to c-1 left unknown (a timeout), then one to c-2 on the same household
    # number, sent
    ledger = harness.ledger
    later = T0 + timedelta(hours=1)
    older = await attempted(ledger, 1, T0)
    await ledger.record_unknown(older, "timed out", T0)
    await ledger.record_sent(await attempted(ledger, 2, later), "twilio", "SM2", later)
    # when Twilio's callback for the older one comes afterwards and reconciles it
    assert await ledger.reconcile(older, "twilio", "SM1", "delivered", later + timedelta(hours=1))
    # then a reply from the number is still c-2's, whose SMS went out last
    assert await ledger.contact_for_address(HOUSEHOLD) == "c-2"


async def test_a_reply_goes_to_a_send_that_went_out_rather_than_a_later_one_that_failed(
    harness: Harness,
) -> None:
    ledger = harness.ledger
    later = T0 + timedelta(hours=1)
    await ledger.record_sent(await attempted(ledger, 1, T0), "twilio", "SM1", T0)
    await ledger.record_failed(await attempted(ledger, 2, later), "invalid number", "21211", later)
    assert await ledger.contact_for_address(HOUSEHOLD) == "c-1"


async def test_of_two_sends_decided_at_one_moment_a_reply_goes_to_the_later(
    harness: Harness,
) -> None:
    ledger = harness.ledger
    first = await attempted(ledger, 1, T0)
    second = await attempted(ledger, 2, T0)
    await ledger.record_sent(first, "twilio", "SM1", T0)
    await ledger.record_sent(second, "twilio", "SM2", T0 + timedelta(seconds=1))
    assert await ledger.contact_for_address(HOUSEHOLD) == "c-2"


async def test_an_address_maps_to_the_contact_last_contacted_there(harness: Harness) -> None:
    ledger = harness.ledger
    await ledger.claim(FX, sms(1, to="+12125550101"), T0)
    later = EffectId("fx:later")
    at = T0.replace(hour=15)
    await ledger.claim(later, replace(sms(2, to="+12125550101", effect_id=later), time=at), at)
    assert await ledger.contact_for_address("+12125550101") == "c-2"
    assert await ledger.contact_for_address("+19999999999") is None


# -- start: claim and begin in one step (the processor's path when the line is free) --------


async def test_start_records_a_new_command_in_flight_before_any_call(harness: Harness) -> None:
    ledger = harness.ledger
    # when a new command is started
    assert await ledger.start(FX, sms(), T0) == 1
    # then its row is in flight, attempt 1, owned by this processor, with the command
    entry = await ledger.get(FX)
    assert entry is not None
    assert (entry.status, entry.attempts, entry.owner) == (IN_FLIGHT, 1, ledger.owner)
    assert entry.command["data"]["effect_id"] == FX
    # and it is never started or claimed again, in flight or finished
    assert await ledger.start(FX, sms(), T0) is None
    assert await ledger.claim(FX, sms(), T0) is False
    await ledger.record_sent(FX, "twilio", "SM1", T0)
    assert await ledger.start(FX, sms(), T0) is None
    assert await status(ledger) == SENT


async def test_start_takes_over_a_row_that_was_never_attempted(harness: Harness) -> None:
    # given a command claimed just before a crash, and one refused once (429) before it
    ledger = harness.ledger
    refused = EffectId("fx:refused")
    assert await ledger.claim(FX, sms(), T0)
    await ledger.start(refused, sms(2, effect_id=refused), T0)
    await ledger.release(refused, "429", T0)
    # when they are redelivered
    restarted = await harness.restart()
    # then each goes on with its next attempt
    assert await restarted.start(FX, sms(), T0) == 1
    assert await restarted.start(refused, sms(2, effect_id=refused), T0) == 2


async def test_concurrent_starts_of_one_effect_let_exactly_one_through(
    harness: Harness,
) -> None:
    other = await harness.sibling()
    started = await asyncio.gather(
        harness.ledger.start(FX, sms(), T0),
        harness.ledger.start(FX, sms(), T0),
        other.start(FX, sms(), T0),
    )
    assert sorted(started, key=lambda a: a is None) == [1, None, None]


async def test_a_started_send_of_a_dead_processor_becomes_unknown(harness: Harness) -> None:
    # given a send started (and maybe made) when the processor died
    await harness.ledger.start(FX, sms(), T0)
    # when a new processor starts
    restarted = await harness.restart()
    recovered = await restarted.recover_abandoned(T0)
    # then it is unknown, and never sent again
    assert [entry.effect_id for entry in recovered] == [FX]
    assert await restarted.start(FX, sms(), T0) is None
    assert await status(restarted) == UNKNOWN


async def test_many_starts_go_together(harness: Harness) -> None:
    ids = [EffectId(f"fx:{n}") for n in range(60)]
    ledger = harness.ledger
    # some were claimed before, one already finished
    await ledger.claim(ids[0], sms(effect_id=ids[0]), T0)
    await ledger.start(ids[1], sms(effect_id=ids[1]), T0)
    await ledger.record_sent(ids[1], "twilio", "SM1", T0)
    started = await asyncio.gather(*(ledger.start(i, sms(effect_id=i), T0) for i in ids))
    assert started == [1, None, *[1] * 58]


async def test_a_one_time_token_is_taken_once_while_kept(harness: Harness) -> None:
    kept = T0 + timedelta(minutes=30)
    assert await harness.ledger.first_use("mailgun:t1", T0, kept) is True
    assert await harness.ledger.first_use("mailgun:t1", T0, kept) is False
    assert await harness.ledger.first_use("mailgun:t2", T0, kept) is True
    # past its time it is forgotten: taking it again is a first use
    after = kept + timedelta(seconds=1)
    assert await harness.ledger.first_use("mailgun:t1", after, after) is True
    # and one taken back (its request failed) is a first use again
    await harness.ledger.forget_use("mailgun:t2")
    assert await harness.ledger.first_use("mailgun:t2", T0, kept) is True


@pytest.mark.postgres
async def test_the_lease_session_is_dropped_soon_after_its_host_goes(clean_database: str) -> None:
    # the server's keepalives for the lease's session: a dead host's lease (and its sends
    # in flight) is let go within about a minute, not the system's 2 hours; options the
    # URL sets are kept
    from effects.ledger_postgres import _connect_lease  # noqa: PLC0415

    # (clean_database's URL sets options of its own: the schema to work in)
    lease = await _connect_lease(clean_database)
    try:
        cursor = await lease.execute(
            "SELECT current_setting('tcp_keepalives_idle'), current_setting('search_path')"
        )
        idle, path = await cursor.fetchone() or ("", "")
        assert idle == "30"
        assert path.startswith("fx_")
    finally:
        await lease.close()
