"""An effects processor busy sending while its PostgreSQL goes away.

Given 2,000 SMS commands on `effects` and a fake Twilio that takes a moment per send, when
the ledger's database drops every connection of the one `dripstream effects` and refuses
new ones while it sends (what a restart or a failover does), once for a few seconds (the
connection pool waits) and once for longer than a statement waits for a connection (the
run ends, and starts again once the database answers), then the process is still running,
Twilio saw each effect id at most once, and every effect has its outcome: sent, or unknown
for a send the outage cut off between Twilio's answer and the ledger.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from typing import Any

import psycopg
import pytest

# aiokafka ships no type information.
from aiokafka.admin import NewTopic  # type: ignore[import-untyped]
from psycopg import sql

from effects.fakes.twilio_server import FakeTwilioServer
from tests.effects.helpers import start_effects
from tests.effects.test_scale_out import publish_texts, read_outcomes, until_sent

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(300)]

COUNT = 2_000
CONCURRENCY = 16
APPLICATION = "fx-outage"


async def go_away(admin_url: str, url: str, seconds: float) -> int:
    """Refuses new connections to `url`'s database for `seconds` and terminates the
    processor's sessions on it; how many there were."""
    name = sql.Identifier(psycopg.conninfo.conninfo_to_dict(url)["dbname"])
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as admin:
        await admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(name))
        try:
            cursor = await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s",
                (APPLICATION,),
            )
            terminated = len(await cursor.fetchall())
            await asyncio.sleep(seconds)
        finally:
            await admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(name))
    return terminated


async def test_a_busy_processor_waits_out_postgresql_dropping_its_connections(
    kafka_bootstrap: str, kafka_admin: Any, fresh_database_url: str, database_url: str
) -> None:
    prefix = f"dripstream.po{uuid.uuid4().hex[:10]}."
    topics = [prefix + name for name in ("effects", "outcomes", "contacts", "dlq")]
    await kafka_admin.create_topics([NewTopic(name, 3, 1) for name in topics])
    effect_ids = [f"fx:outage:c-{n}:1:s1:1" for n in range(COUNT)]
    process: asyncio.subprocess.Process | None = None
    try:
        async with FakeTwilioServer(latency=0.05) as twilio:
            await publish_texts(kafka_bootstrap, prefix + "effects", effect_ids)
            process = await start_effects(
                twilio.url,
                f"{fresh_database_url}?application_name={APPLICATION}",
                stderr=asyncio.subprocess.PIPE,
                KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
                DRIPSTREAM_TOPIC_PREFIX=prefix,
                EFFECTS_CONSUMER_GROUP=f"effects-{uuid.uuid4().hex[:8]}",
                EFFECTS_LINE_RATE="100000",
                EFFECTS_CONCURRENCY=str(CONCURRENCY),
                EFFECTS_BATCH_SIZE="50",
                EFFECTS_HTTP_PORT="0",
            )
            # when its database goes away twice while it sends, the second time for longer
            # than the ledger's pool waits for a connection (30 s)
            dropped = []
            for share, seconds in ((6, 3.0), (3, 35.0)):
                await until_sent(twilio, COUNT // share)
                dropped.append(await go_away(database_url, fresh_database_url, seconds))
                assert process.returncode is None, "the processor stopped"
            announced = await read_outcomes(kafka_bootstrap, prefix, set(effect_ids))
            # then it is still running, and stops cleanly when told to
            assert process.returncode is None, "the processor stopped"
            process.send_signal(signal.SIGTERM)
            _, log = await asyncio.wait_for(process.communicate(), timeout=60)
            assert process.returncode == 0, log.decode()[-3000:]
    finally:
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()
        await kafka_admin.delete_topics(topics)

    assert all(dropped), dropped  # each drop met connections of the processor
    assert b"effects worker lost its connection" in log, log.decode()
    # and Twilio saw each effect id at most once
    assert max(twilio.requests_by_effect.values()) == 1
    # and the ledger and the outcomes agree: each effect sent, or unknown (cut off by a drop)
    with psycopg.connect(fresh_database_url) as conn:
        ledger = dict(conn.execute("SELECT effect_id, status FROM effect_ledger").fetchall())
    assert set(ledger) == set(effect_ids)
    unknown = {e for e, status in ledger.items() if status == "unknown"}
    assert {status for e, status in ledger.items() if e not in unknown} == {"sent"}
    assert len(unknown) <= 2 * CONCURRENCY, len(unknown)
    for effect_id, status in ledger.items():
        assert f"effect.{status}" in announced[effect_id], effect_id
    # and what was not cut off got through
    assert len(twilio.requests_by_effect) >= COUNT - len(unknown)
