"""The effect ledger: one row per effect_id, so a command is carried out at most once.

Life of a row::

    claim ──► pending ──begin──► in_flight ──► sent | failed | unknown
                 ▲                   │
                 └──── release ──────┘  (a refusal that sent nothing: 429, 503, no connection,
                                          refused credentials)

    start = claim + begin in one step: (no row | pending) ──► in_flight

`start` is the usual path (one round trip per send, batched): the processor takes it when
the line has a free slot; a send that must wait for its line is claimed `pending` first
and begun when its turn comes, so a crash while it waits leaves a row never attempted.
A row is written `in_flight` *before* the provider is called. A crash during the call leaves
it there; recovery turns it into `unknown` (the message may or may not have gone out) and a
provider status callback later reconciles it to `sent`. Nothing in `in_flight` or `unknown`
is ever sent again: sending late (or never) is better than sending twice.

In PostgreSQL a processor proves it is alive by holding a session advisory lock named after
its owner id; recovery turns only the rows of owners whose lock it can take into `unknown`,
so one worker starting up never disowns the calls another worker is still making.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

import orjson
import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from effects.groupcommit import GroupCommit
from effects.ports import EffectId
from schemas.envelope import CloudEvent, parse_time

PENDING = "pending"
IN_FLIGHT = "in_flight"
SENT = "sent"
UNDELIVERED = "undelivered"  # the code of a sent row some of whose recipients were missed
FAILED = "failed"
UNKNOWN = "unknown"
# The statuses of a send that reached (or may have reached) its recipient: a reply is to one
# of those rather than to one still pending or refused.
WENT_OUT = frozenset({SENT, UNKNOWN, IN_FLIGHT})

# How long the lease's connection may take to answer before it counts as lost.
LEASE_CHECK_TIMEOUT = 10.0

ABANDONED = "in flight when its processor stopped; not resent (reconcile from provider status)"

# Effect types whose `to` is a contact's address: an inbound message from that address is
# attributed to the contact of the latest such effect.
CONTACT_FACING = ("sms.send", "mms.send", "call.dial", "voicemail.drop", "email.send")


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    effect_id: EffectId
    type: str
    status: str
    provider: str | None
    provider_id: str | None
    error: str | None
    code: str | None
    attempts: int
    owner: str | None
    updated_at: datetime
    command: Mapping[str, Any]  # the command's CloudEvent JSON

    @property
    def context(self) -> dict[str, Any]:
        data = self.command.get("data", {})
        out: dict[str, Any] = {"effect_type": self.type}
        for key in ("sequence_id", "contact_id", "enrollment_id", "step_id"):
            if key in data:
                out[key] = data[key]
        return out


class Ledger(Protocol):
    """The port. Every method is one atomic step; `at` comes from the injected clock."""

    owner: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def keep_lease(self) -> bool:
        """Check that this processor still holds its lease (what tells other processors it
        is alive) and take it again when it was lost; True when it had to be taken again.
        Until then, another processor's recovery may have marked this one's sends in
        flight `unknown` (one that went out is still recorded `sent` when it returns)."""
        ...

    async def claim(self, effect_id: EffectId, command: CloudEvent, at: datetime) -> bool:
        """Insert `pending` if absent. True when the caller may go on: the row is new, or
        still `pending` (claimed before a crash, never attempted). False otherwise — also,
        in PostgreSQL, to a claimer racing another's insert (that one goes on). `begin`
        then lets exactly one attempt through."""
        ...

    async def begin(self, effect_id: EffectId, at: datetime) -> int | None:
        """`pending` -> `in_flight` owned by this ledger's owner; the attempt number, or
        None when someone else got there first."""
        ...

    async def start(self, effect_id: EffectId, command: CloudEvent, at: datetime) -> int | None:
        """`claim` and `begin` as one atomic step: a new row is inserted `in_flight`
        (attempt 1), a `pending` one moves to `in_flight`; the attempt number, or None
        when the row is in any other state or a concurrent caller got there first."""
        ...

    async def release(
        self, effect_id: EffectId, error: str, at: datetime, *, counted: bool = True
    ) -> None:
        """`in_flight` -> `pending`: the attempt was refused and sent nothing. Not `counted`
        (refused credentials: the operator's error, not the send's), it uses none of the
        command's tries."""
        ...

    async def record_sent(
        self,
        effect_id: EffectId,
        provider: str,
        provider_id: str,
        at: datetime,
        undelivered: str | None = None,
    ) -> None:
        """`undelivered`: the recipients of a sent effect not reached (`effects.fan_out`),
        kept as the row's error with the code `UNDELIVERED`."""
        ...

    async def record_failed(
        self, effect_id: EffectId, error: str, code: str | None, at: datetime
    ) -> None: ...

    async def record_unknown(self, effect_id: EffectId, error: str, at: datetime) -> None: ...

    async def reconcile(
        self, effect_id: EffectId, provider: str, provider_id: str, status: str, at: datetime
    ) -> LedgerEntry | None:
        """A provider callback proves the request was accepted: an `unknown` (or orphaned
        `in_flight`) row becomes `sent`. Returns the row when it changed, else None."""
        ...

    async def get(self, effect_id: EffectId) -> LedgerEntry | None: ...

    async def recover_abandoned(self, at: datetime) -> list[LedgerEntry]:
        """`in_flight` rows of processors that are gone -> `unknown`; returns them."""
        ...

    async def mark_connected(self, effect_id: EffectId, by: str) -> bool:
        """First caller wins (the agent who answers a preview call first)."""
        ...

    async def connected_by(self, effect_id: EffectId) -> str | None:
        """Who `mark_connected` recorded, if anyone."""
        ...

    async def first_use(self, key: str, at: datetime, keep_until: datetime) -> bool:
        """True the first time `key` (a provider's one-time token) is seen; False when it
        was seen before and is still kept (a replayed request). Kept until `keep_until`."""
        ...

    async def forget_use(self, key: str) -> None:
        """Take back a `first_use` whose request then failed, so the provider's retry of it
        is not refused as a replay."""
        ...

    async def contact_for_address(self, address: str) -> str | None:
        """The contact of the latest contact-facing effect decided for this address (by the
        command's time: a status callback that touches an older row later does not make it
        the latest), preferring one that went out (or may have) to one pending or failed."""
        ...


# -- in memory -----------------------------------------------------------------------------


@dataclass
class _Row:
    entry: LedgerEntry
    connected_by: str | None = None


class _MemoryStore:
    def __init__(self) -> None:
        self.rows: dict[str, _Row] = {}
        self.live_owners: set[str] = set()
        self.used_keys: dict[str, datetime] = {}  # one-time token -> kept until


class InMemoryLedger:
    """The fake: same transitions as PostgreSQL, in a dict. `restarted()` simulates a crash
    and restart of the process over the same (durable) rows."""

    def __init__(self, owner: str = "memory", store: _MemoryStore | None = None) -> None:
        self.owner = owner
        self._store = store or _MemoryStore()
        self._store.live_owners.add(owner)

    def restarted(self, owner: str) -> InMemoryLedger:
        """A new processor over the same rows; this one is considered dead."""
        self._store.live_owners.discard(self.owner)
        return InMemoryLedger(owner, self._store)

    async def open(self) -> None:
        self._store.live_owners.add(self.owner)

    async def close(self) -> None:
        self._store.live_owners.discard(self.owner)

    async def keep_lease(self) -> bool:
        if self.owner in self._store.live_owners:
            return False
        self._store.live_owners.add(self.owner)
        return True

    async def claim(self, effect_id: EffectId, command: CloudEvent, at: datetime) -> bool:
        row = self._store.rows.get(effect_id)
        if row is None:
            self._store.rows[effect_id] = _Row(
                LedgerEntry(
                    effect_id=effect_id,
                    type=command.type,
                    status=PENDING,
                    provider=None,
                    provider_id=None,
                    error=None,
                    code=None,
                    attempts=0,
                    owner=None,
                    updated_at=at,
                    command=orjson.loads(command.encode()),
                )
            )
            return True
        return row.entry.status == PENDING

    async def start(self, effect_id: EffectId, command: CloudEvent, at: datetime) -> int | None:
        await self.claim(effect_id, command, at)
        return await self.begin(effect_id, at)

    def _update(self, effect_id: EffectId, allowed: frozenset[str], **changes: Any) -> bool:
        row = self._store.rows.get(effect_id)
        if row is None or row.entry.status not in allowed:
            return False
        row.entry = replace(row.entry, **changes)
        return True

    async def begin(self, effect_id: EffectId, at: datetime) -> int | None:
        row = self._store.rows.get(effect_id)
        if row is None or row.entry.status != PENDING:
            return None
        attempts = row.entry.attempts + 1
        row.entry = replace(
            row.entry, status=IN_FLIGHT, attempts=attempts, owner=self.owner, updated_at=at
        )
        return attempts

    async def release(
        self, effect_id: EffectId, error: str, at: datetime, *, counted: bool = True
    ) -> None:
        row = self._store.rows.get(effect_id)
        if row is None or row.entry.status != IN_FLIGHT:
            return
        attempts = row.entry.attempts if counted else row.entry.attempts - 1
        row.entry = replace(
            row.entry, status=PENDING, error=error, updated_at=at, attempts=attempts
        )

    async def record_sent(
        self,
        effect_id: EffectId,
        provider: str,
        provider_id: str,
        at: datetime,
        undelivered: str | None = None,
    ) -> None:
        self._update(
            effect_id,
            frozenset({IN_FLIGHT, UNKNOWN, SENT}),
            status=SENT,
            provider=provider,
            provider_id=provider_id,
            error=undelivered,
            **({"code": UNDELIVERED} if undelivered else {}),
            updated_at=at,
        )

    async def record_failed(
        self, effect_id: EffectId, error: str, code: str | None, at: datetime
    ) -> None:
        self._update(
            effect_id,
            frozenset({PENDING, IN_FLIGHT}),
            status=FAILED,
            error=error,
            code=code,
            updated_at=at,
        )

    async def record_unknown(self, effect_id: EffectId, error: str, at: datetime) -> None:
        self._update(effect_id, frozenset({IN_FLIGHT}), status=UNKNOWN, error=error, updated_at=at)

    async def reconcile(
        self, effect_id: EffectId, provider: str, provider_id: str, status: str, at: datetime
    ) -> LedgerEntry | None:
        changed = self._update(
            effect_id,
            frozenset({UNKNOWN, IN_FLIGHT}),
            status=SENT,
            provider=provider,
            provider_id=provider_id,
            error=f"reconciled from provider status {status}",
            updated_at=at,
        )
        return self._store.rows[effect_id].entry if changed else None

    async def get(self, effect_id: EffectId) -> LedgerEntry | None:
        row = self._store.rows.get(effect_id)
        return row.entry if row else None

    async def recover_abandoned(self, at: datetime) -> list[LedgerEntry]:
        recovered = []
        for row in self._store.rows.values():
            entry = row.entry
            if entry.status == IN_FLIGHT and entry.owner not in self._store.live_owners:
                row.entry = replace(entry, status=UNKNOWN, error=ABANDONED, updated_at=at)
                recovered.append(row.entry)
        return recovered

    async def mark_connected(self, effect_id: EffectId, by: str) -> bool:
        row = self._store.rows.get(effect_id)
        if row is None or row.connected_by not in (None, by):
            return False
        row.connected_by = by
        return True

    async def connected_by(self, effect_id: EffectId) -> str | None:
        row = self._store.rows.get(effect_id)
        return row.connected_by if row else None

    async def first_use(self, key: str, at: datetime, keep_until: datetime) -> bool:
        used = self._store.used_keys
        for old_key in [k for k, until in used.items() if until < at]:
            del used[old_key]
        if key in used:
            return False
        used[key] = keep_until
        return True

    async def forget_use(self, key: str) -> None:
        self._store.used_keys.pop(key, None)

    async def contact_for_address(self, address: str) -> str | None:
        matching = [
            row.entry
            for row in self._store.rows.values()
            if row.entry.type in CONTACT_FACING
            and row.entry.command.get("data", {}).get("to") == address
        ]
        if not matching:
            return None
        # Read from the last claimed, max keeps the first of equals: of sends decided at
        # the same moment, the one claimed last (PostgreSQL, which keeps no claim order,
        # takes the one changed last).
        best = max(
            reversed(matching),
            key=lambda e: (e.status in WENT_OUT, parse_time(str(e.command["time"]))),
        )
        contact = best.command.get("data", {}).get("contact_id")
        return contact if isinstance(contact, str) else None


# -- PostgreSQL ----------------------------------------------------------------------------

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
"""


class PostgresLedger:
    """The real adapter (psycopg 3, async pool, autocommit: every statement commits)."""

    def __init__(self, database_url: str, owner: str, *, pool_size: int = 8) -> None:
        self.owner = owner
        self._url = database_url
        self._pool = AsyncConnectionPool(
            database_url,
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
        self._lease = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
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
        renewed = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
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
            await conn.execute(SCHEMA)

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

    async def record_unknown(self, effect_id: EffectId, error: str, at: datetime) -> None:
        await self._moves.submit(_Move(effect_id, UNKNOWN, (IN_FLIGHT,), at, error=error))

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

    async def _move_batch(self, moves: list[_Move]) -> list[None]:
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
            await conn.execute(_MOVE, (rows.decode(),))
        return [None] * len(moves)

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
