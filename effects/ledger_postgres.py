"""The effect ledger in PostgreSQL (effects/ledger.py): one row per effect_id, batched
statements, and each processor's lease an advisory lock."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from effects.groupcommit import GroupCommit
from effects.ledger import (
    ABANDONED,
    CONTACT_FACING,
    FAILED,
    IN_FLIGHT,
    PENDING,
    SENT,
    UNDELIVERED,
    UNKNOWN,
    WENT_OUT,
    LedgerEntry,
)
from effects.pg_schema import claim_for, create_schema, in_schema
from effects.ports import EffectId
from schemas.envelope import CloudEvent

# How long the lease's connection may take to answer before it counts as lost.
LEASE_CHECK_TIMEOUT = 10.0

# Advisory-lock namespace (first key of the two-int form) for effects' processor leases.
_LOCK_NAMESPACE = 0x45464658  # "EFFX"

SCHEMA = """
CREATE TABLE IF NOT EXISTS effect_ledger (
    effect_id    text PRIMARY KEY,
    type         text NOT NULL,
    status       text NOT NULL
                 CHECK (status IN ('pending', 'in_flight', 'sent', 'failed', 'unknown')),
    provider     text,
    provider_id  text,
    error        text,
    code         text,
    attempts     integer NOT NULL DEFAULT 0,
    owner        text,
    connected_by text,
    updated_at   timestamptz NOT NULL,
    command      jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS effect_ledger_in_flight
    ON effect_ledger (owner) WHERE status = 'in_flight';
CREATE INDEX IF NOT EXISTS effect_ledger_to
    ON effect_ledger ((command -> 'data' ->> 'to'), updated_at DESC);
CREATE TABLE IF NOT EXISTS used_callback_tokens (
    key        text PRIMARY KEY,
    kept_until timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS used_callback_tokens_kept_until
    ON used_callback_tokens (kept_until);
"""

_COLUMNS = (
    "effect_id, type, status, provider, provider_id, error, code, attempts, owner,"
    " updated_at, command"
)

# Built once from constants (ruff's S608 cannot tell); every value is a bound parameter. The
# two UPDATEs spell _COLUMNS out: S608 flags any interpolated UPDATE.
_GET = f"SELECT {_COLUMNS} FROM effect_ledger WHERE effect_id = %s"  # noqa: S608
_RECONCILE = (
    "UPDATE effect_ledger SET status = 'sent', provider = %s, provider_id = %s, error = %s,"
    " updated_at = %s WHERE effect_id = %s AND status IN ('unknown', 'in_flight')"
    " RETURNING effect_id, type, status, provider, provider_id, error, code, attempts, owner,"
    " updated_at, command"
)
_ABANDON = (
    "UPDATE effect_ledger SET status = 'unknown', error = %s, updated_at = %s"
    " WHERE status = 'in_flight' AND owner IS NOT DISTINCT FROM %s"
    " RETURNING effect_id, type, status, provider, provider_id, error, code, attempts, owner,"
    " updated_at, command"
)


def _entry(row: Mapping[str, Any]) -> LedgerEntry:
    return LedgerEntry(
        effect_id=EffectId(row["effect_id"]),
        type=row["type"],
        status=row["status"],
        provider=row["provider"],
        provider_id=row["provider_id"],
        error=row["error"],
        code=row["code"],
        attempts=row["attempts"],
        owner=row["owner"],
        updated_at=row["updated_at"],
        command=row["command"],
    )


@dataclass(frozen=True, slots=True)
class _Arrival:
    """A command to claim (or start): its id, type, time and CloudEvent JSON bytes."""

    effect_id: EffectId
    type: str
    at: datetime
    command: bytes


def _arrivals(items: list[_Arrival]) -> str:
    return orjson.dumps(
        [
            {
                "effect_id": item.effect_id,
                "type": item.type,
                "at": item.at,
                "command": orjson.Fragment(item.command),
            }
            for item in items
        ]
    ).decode()


@dataclass(frozen=True, slots=True)
class _Move:
    """One status transition: to `status`, only from one of `allowed`."""

    effect_id: EffectId
    status: str
    allowed: tuple[str, ...]
    at: datetime
    provider: str | None = None
    provider_id: str | None = None
    error: str | None = None
    code: str | None = None
    uncount: bool = False  # give the attempt back (a release that used none of the tries)


# The hot-path statements take their batch as one JSON array (one parameter, encoded by
# orjson in one call; the commands go in as the bytes they already are): adapting arrays
# item by item cost more CPU than everything else the ledger does per send.
_CLAIM = """
WITH input AS (
    SELECT * FROM jsonb_to_recordset(%s::jsonb)
        AS i(effect_id text, type text, at timestamptz, command jsonb)
), inserted AS (
    INSERT INTO effect_ledger (effect_id, type, status, attempts, updated_at, command)
    SELECT DISTINCT ON (effect_id) effect_id, type, 'pending', 0, at, command FROM input
    ORDER BY effect_id
    ON CONFLICT (effect_id) DO NOTHING
    RETURNING effect_id
)
SELECT effect_id FROM inserted
UNION
SELECT l.effect_id FROM effect_ledger l JOIN input USING (effect_id) WHERE l.status = 'pending'
"""

_BEGIN = """
UPDATE effect_ledger l
SET status = 'in_flight', attempts = l.attempts + 1, owner = %s, updated_at = v.at
FROM jsonb_to_recordset(%s::jsonb) AS v(effect_id text, at timestamptz)
WHERE l.effect_id = v.effect_id AND l.status = 'pending'
RETURNING l.effect_id, l.attempts
"""

# claim + begin: a new row goes straight to in_flight, a pending one moves there; rows in
# any other state are left alone (and not returned). Sorted, so two processors upserting
# overlapping batches lock rows in the same order.
_START = """
INSERT INTO effect_ledger AS l (effect_id, type, status, attempts, owner, updated_at, command)
SELECT DISTINCT ON (i.effect_id) i.effect_id, i.type, 'in_flight', 1, %s, i.at, i.command
FROM jsonb_to_recordset(%s::jsonb)
    AS i(effect_id text, type text, at timestamptz, command jsonb)
ORDER BY i.effect_id
ON CONFLICT (effect_id) DO UPDATE
SET status = 'in_flight', attempts = l.attempts + 1, owner = excluded.owner,
    updated_at = excluded.updated_at
WHERE l.status = 'pending'
RETURNING l.effect_id, l.attempts
"""

# error is replaced (NULL for sent); provider fields and code are kept unless given.
_MOVE = """
UPDATE effect_ledger l
SET status = v.status, updated_at = v.at, error = v.error,
    provider = COALESCE(v.provider, l.provider),
    provider_id = COALESCE(v.provider_id, l.provider_id),
    code = COALESCE(v.code, l.code),
    attempts = l.attempts - CASE WHEN v.uncount THEN 1 ELSE 0 END
FROM jsonb_to_recordset(%s::jsonb)
    AS v(effect_id text, status text, allowed text[], at timestamptz, provider text,
         provider_id text, error text, code text, uncount boolean)
WHERE l.effect_id = v.effect_id AND l.status = ANY(v.allowed)
RETURNING l.effect_id, l.status
"""


# The server's own TCP keepalives for the lease's session: a processor whose host died,
# or whose network was cut, leaves a session PostgreSQL would keep (and its lease, and so
# its sends in flight without an outcome) for the system's default, often 2 hours and
# more; with these it is gone within about a minute. (A process stopped on a live host
# still answers keepalives: its lease stays until it is killed.) Set in the session, not
# as startup options, which a pooler in front may refuse and the URL may set already.
_SERVER_KEEPALIVES = (
    "SET tcp_keepalives_idle = 30",
    "SET tcp_keepalives_interval = 10",
    "SET tcp_keepalives_count = 3",
)


async def _connect_lease(url: str) -> psycopg.AsyncConnection[Any]:
    lease = await psycopg.AsyncConnection.connect(url, autocommit=True)
    try:
        for setting in _SERVER_KEEPALIVES:
            await lease.execute(setting)
    except BaseException:
        await lease.close()
        raise
    return lease


class PostgresLedger:
    """The real adapter (psycopg 3, async pool, autocommit: every statement commits)."""

    def __init__(
        self,
        database_url: str,
        owner: str,
        *,
        pool_size: int = 8,
        schema: str | None = None,
        serves: str | None = None,
    ) -> None:
        """`schema`: effects/pg_schema.py; `serves`: the topic prefix of the deployment
        whose commands it carries out (None: no deployment's, as a run over a file)."""
        self.owner = owner
        self._serves = serves
        self._url = in_schema(database_url, schema)  # effects/pg_schema.py
        self._schema = schema
        self._pool = AsyncConnectionPool(
            self._url,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True},
            # A pooled connection PostgreSQL dropped (a restart, a failover) is replaced
            # when taken: otherwise the first batch after an outage fails on it, minutes
            # later for an idle processor.
            check=AsyncConnectionPool.check_connection,
            open=False,
        )
        self._lease: psycopg.AsyncConnection[Any] | None = None
        self._claims = GroupCommit(self._claim_batch)
        self._begins = GroupCommit(self._begin_batch)
        self._starts = GroupCommit(self._start_batch)
        self._moves = GroupCommit(self._move_batch)

    async def open(self) -> None:
        # The lease first: held for the life of the process, dropped by PostgreSQL when
        # the process dies, which is how recovery tells a dead processor from a slow one.
        # A plain connect, it also says at once when the database cannot be reached,
        # where the pool would retry for its whole timeout, warning at each attempt.
        self._lease = await _connect_lease(self._url)
        try:
            await self._pool.open()
            await self.migrate()
            await self._take_lease(self._lease)
        except BaseException:
            await self.close()  # the caller registers close() only once this returns
            raise

    async def _take_lease(self, lease: psycopg.AsyncConnection[Any]) -> None:
        await lease.execute(
            "SELECT pg_advisory_lock(%s, hashtext(%s))", (_LOCK_NAMESPACE, self.owner)
        )

    async def keep_lease(self) -> bool:
        # The pool reconnects on its own after PostgreSQL restarts or drops a connection;
        # the lease's connection does not, and its session lock went with it.
        lease = self._lease
        if lease is None:
            return False  # not open (or closed): nothing to keep
        if not lease.closed:
            try:
                await asyncio.wait_for(lease.execute("SELECT 1"), LEASE_CHECK_TIMEOUT)
            except (psycopg.Error, TimeoutError):
                pass
            else:
                return False
            with contextlib.suppress(psycopg.Error):
                await lease.close()
        renewed = await _connect_lease(self._url)
        try:
            await self._take_lease(renewed)
        except BaseException:
            await renewed.close()
            raise
        self._lease = renewed
        return True

    async def close(self) -> None:
        if self._lease is not None:
            await self._lease.close()
            self._lease = None
        await self._pool.close()

    async def migrate(self) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (_LOCK_NAMESPACE,))
            if (statement := create_schema(self._schema)) is not None:
                await conn.execute(statement)
            await conn.execute(SCHEMA)
            if self._serves is not None:
                await claim_for(conn, self._serves, self._schema)

    # The hot path (claim, begin, the transitions) goes through group commits: one
    # statement per batch of concurrent callers.

    async def claim(self, effect_id: EffectId, command: CloudEvent, at: datetime) -> bool:
        return await self._claims.submit(_Arrival(effect_id, command.type, at, command.encode()))

    async def begin(self, effect_id: EffectId, at: datetime) -> int | None:
        return await self._begins.submit((effect_id, at))

    async def start(self, effect_id: EffectId, command: CloudEvent, at: datetime) -> int | None:
        return await self._starts.submit(_Arrival(effect_id, command.type, at, command.encode()))

    async def release(
        self, effect_id: EffectId, error: str, at: datetime, *, counted: bool = True
    ) -> None:
        move = _Move(effect_id, PENDING, (IN_FLIGHT,), at, error=error, uncount=not counted)
        await self._moves.submit(move)

    async def record_sent(
        self,
        effect_id: EffectId,
        provider: str,
        provider_id: str,
        at: datetime,
        undelivered: str | None = None,
    ) -> None:
        await self._moves.submit(
            _Move(
                effect_id,
                SENT,
                (IN_FLIGHT, UNKNOWN, SENT),
                at,
                provider=provider,
                provider_id=provider_id,
                error=undelivered,
                code=UNDELIVERED if undelivered else None,
            )
        )

    async def record_failed(
        self, effect_id: EffectId, error: str, code: str | None, at: datetime
    ) -> None:
        await self._moves.submit(
            _Move(effect_id, FAILED, (PENDING, IN_FLIGHT), at, error=error, code=code)
        )

    async def record_unknown(self, effect_id: EffectId, error: str, at: datetime) -> bool:
        return await self._moves.submit(_Move(effect_id, UNKNOWN, (IN_FLIGHT,), at, error=error))

    async def _claim_batch(self, items: list[_Arrival]) -> list[bool]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(_CLAIM, (_arrivals(items),))
            claimable = {row[0] for row in await cursor.fetchall()}
        return [item.effect_id in claimable for item in items]

    async def _begin_batch(self, items: list[tuple[EffectId, datetime]]) -> list[int | None]:
        rows = orjson.dumps([{"effect_id": effect_id, "at": at} for effect_id, at in items])
        async with self._pool.connection() as conn:
            cursor = await conn.execute(_BEGIN, (self.owner, rows.decode()))
            attempts = {row[0]: int(row[1]) for row in await cursor.fetchall()}
        # One row moved once: if the same effect was asked twice, only the first asker
        # owns the attempt.
        return [attempts.pop(effect_id, None) for effect_id, _ in items]

    async def _start_batch(self, items: list[_Arrival]) -> list[int | None]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(_START, (self.owner, _arrivals(items)))
            attempts = {row[0]: int(row[1]) for row in await cursor.fetchall()}
        return [attempts.pop(item.effect_id, None) for item in items]

    async def _move_batch(self, moves: list[_Move]) -> list[bool]:
        rows = orjson.dumps(
            [
                {
                    "effect_id": m.effect_id,
                    "status": m.status,
                    "allowed": m.allowed,
                    "at": m.at,
                    "provider": m.provider,
                    "provider_id": m.provider_id,
                    "error": m.error,
                    "code": m.code,
                    "uncount": m.uncount,
                }
                for m in moves
            ]
        )
        async with self._pool.connection() as conn:
            cursor = await conn.execute(_MOVE, (rows.decode(),))
            moved = {(row[0], row[1]) for row in await cursor.fetchall()}
        # Whether each move was made (its row was in a status it may move from).
        return [(m.effect_id, m.status) in moved for m in moves]

    async def reconcile(
        self, effect_id: EffectId, provider: str, provider_id: str, status: str, at: datetime
    ) -> LedgerEntry | None:
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                _RECONCILE,
                (provider, provider_id, f"reconciled from provider status {status}", at, effect_id),
            )
            row = await cursor.fetchone()
        return _entry(row) if row else None

    async def get(self, effect_id: EffectId) -> LedgerEntry | None:
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                _GET,
                (effect_id,),
            )
            row = await cursor.fetchone()
        return _entry(row) if row else None

    async def recover_abandoned(self, at: datetime) -> list[LedgerEntry]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT DISTINCT owner FROM effect_ledger"
                " WHERE status = 'in_flight' AND owner IS DISTINCT FROM %s",
                (self.owner,),
            )
            owners = [row[0] for row in await cursor.fetchall()]
        recovered: list[LedgerEntry] = []
        for owner in owners:
            async with self._pool.connection() as conn, conn.transaction():
                cursor = await conn.execute(
                    "SELECT pg_try_advisory_xact_lock(%s, hashtext(%s))",
                    (_LOCK_NAMESPACE, owner or ""),
                )
                taken = await cursor.fetchone()
                if not taken or not taken[0]:
                    continue  # that processor is alive: its calls are still in progress
                rows_cursor = conn.cursor(row_factory=dict_row)
                await rows_cursor.execute(
                    _ABANDON,
                    (ABANDONED, at, owner),
                )
                recovered.extend(_entry(row) for row in await rows_cursor.fetchall())
        return recovered

    async def mark_connected(self, effect_id: EffectId, by: str) -> bool:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "UPDATE effect_ledger SET connected_by = %s WHERE effect_id = %s"
                " AND (connected_by IS NULL OR connected_by = %s) RETURNING 1",
                (by, effect_id, by),
            )
            return await cursor.fetchone() is not None

    async def first_use(self, key: str, at: datetime, keep_until: datetime) -> bool:
        async with self._pool.connection() as conn:
            # Shared by every effects process: a token one of them took is a replay at all.
            await conn.execute("DELETE FROM used_callback_tokens WHERE kept_until < %s", (at,))
            cursor = await conn.execute(
                "INSERT INTO used_callback_tokens (key, kept_until) VALUES (%s, %s)"
                " ON CONFLICT (key) DO NOTHING RETURNING 1",
                (key, keep_until),
            )
            return await cursor.fetchone() is not None

    async def forget_use(self, key: str) -> None:
        async with self._pool.connection() as conn:
            await conn.execute("DELETE FROM used_callback_tokens WHERE key = %s", (key,))

    async def connected_by(self, effect_id: EffectId) -> str | None:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT connected_by FROM effect_ledger WHERE effect_id = %s", (effect_id,)
            )
            row = await cursor.fetchone()
        return row[0] if row and isinstance(row[0], str) else None

    async def contact_for_address(self, address: str) -> str | None:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT command -> 'data' ->> 'contact_id' FROM effect_ledger"
                " WHERE command -> 'data' ->> 'to' = %s AND type = ANY(%s)"
                " ORDER BY status = ANY(%s) DESC, (command ->> 'time')::timestamptz DESC,"
                " updated_at DESC LIMIT 1",
                (address, list(CONTACT_FACING), sorted(WENT_OUT)),
            )
            row = await cursor.fetchone()
        return row[0] if row and isinstance(row[0], str) else None
