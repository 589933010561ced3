"""The effect ledger in memory (effects/ledger.py): the fake the tests and `dripstream
demo` use, with the same transitions as PostgreSQL's, over rows a restart keeps."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import orjson

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
from effects.ports import EffectId
from schemas.envelope import CloudEvent, parse_time


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

    async def record_unknown(self, effect_id: EffectId, error: str, at: datetime) -> bool:
        return self._update(
            effect_id, frozenset({IN_FLIGHT}), status=UNKNOWN, error=error, updated_at=at
        )

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
