"""The users' power-dialer lists: `power_dialer.added` / `.removed` are table rows, not calls."""

from __future__ import annotations

from datetime import datetime

from psycopg_pool import AsyncConnectionPool

from effects.pg_schema import create_schema, in_schema
from effects.ports import EffectId

SCHEMA = """
CREATE TABLE IF NOT EXISTS power_dialer_queue (
    user_id    text NOT NULL,
    contact_id text NOT NULL,
    effect_id  text NOT NULL,
    added_at   timestamptz NOT NULL,
    PRIMARY KEY (user_id, contact_id)
);
CREATE INDEX IF NOT EXISTS power_dialer_queue_contact ON power_dialer_queue (contact_id);
"""


class InMemoryPowerDialerQueue:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], tuple[EffectId, datetime]] = {}

    async def add(
        self, *, user_id: str, contact_id: str, effect_id: EffectId, at: datetime
    ) -> None:
        self.rows.setdefault((user_id, contact_id), (effect_id, at))

    async def remove(self, *, contact_id: str, user_id: str | None) -> int:
        doomed = [
            key
            for key in self.rows
            if key[1] == contact_id and (user_id is None or key[0] == user_id)
        ]
        for key in doomed:
            del self.rows[key]
        return len(doomed)

    async def users_for(self, contact_id: str) -> list[str]:
        return sorted(user for user, contact in self.rows if contact == contact_id)


class PostgresPowerDialerQueue:
    def __init__(self, database_url: str, schema: str | None = None) -> None:
        self._schema = schema  # effects/pg_schema.py
        self._pool = AsyncConnectionPool(
            in_schema(database_url, schema),
            min_size=1,
            max_size=2,
            kwargs={"autocommit": True},
            open=False,
        )

    async def open(self) -> None:
        await self._pool.open()
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(1162233432, 1)")
            if (statement := create_schema(self._schema)) is not None:
                await conn.execute(statement)
            await conn.execute(SCHEMA)

    async def close(self) -> None:
        await self._pool.close()

    async def add(
        self, *, user_id: str, contact_id: str, effect_id: EffectId, at: datetime
    ) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO power_dialer_queue (user_id, contact_id, effect_id, added_at)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (user_id, contact_id) DO NOTHING",
                (user_id, contact_id, effect_id, at),
            )

    async def remove(self, *, contact_id: str, user_id: str | None) -> int:
        async with self._pool.connection() as conn:
            if user_id is None:
                cursor = await conn.execute(
                    "DELETE FROM power_dialer_queue WHERE contact_id = %s", (contact_id,)
                )
            else:
                cursor = await conn.execute(
                    "DELETE FROM power_dialer_queue WHERE contact_id = %s AND user_id = %s",
                    (contact_id, user_id),
                )
            return cursor.rowcount

    async def users_for(self, contact_id: str) -> list[str]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT user_id FROM power_dialer_queue WHERE contact_id = %s ORDER BY user_id",
                (contact_id,),
            )
            return [str(row[0]) for row in await cursor.fetchall()]
