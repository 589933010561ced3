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

This module is the port; its adapters are effects/ledger_postgres.py and the in-memory fake
of effects/ledger_memory.py, which one contract test suite runs alike (tests/effects).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from effects.ports import EffectId
from schemas.envelope import CloudEvent

PENDING = "pending"
IN_FLIGHT = "in_flight"
SENT = "sent"
UNDELIVERED = "undelivered"  # the code of a sent row some of whose recipients were missed
FAILED = "failed"
UNKNOWN = "unknown"
# The statuses of a send that reached (or may have reached) its recipient: a reply is to one
# of those rather than to one still pending or refused.
WENT_OUT = frozenset({SENT, UNKNOWN, IN_FLIGHT})

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

    async def record_unknown(self, effect_id: EffectId, error: str, at: datetime) -> bool:
        """An `in_flight` row becomes `unknown`; False when it was no longer in flight (a
        provider's callback settled it while the request went unanswered)."""
        ...

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
