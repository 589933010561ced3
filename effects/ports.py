"""The seams of effects/: what a sender is asked, what it answers, and how events leave.

Senders never raise for a provider's answer; they classify it into one of four results, and
the processor alone decides what each means for the ledger (sent, failed, retry, unknown).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import NewType, Protocol

from schemas.envelope import CloudEvent

EffectId = NewType("EffectId", str)

# Longer than any effect id the engine makes (they name a sequence, a contact and a step).
MAX_EFFECT_ID = 1_000


def named_effect(text: object) -> EffectId | None:
    """An effect id as a provider's callback names it, or None when it can name no effect
    of ours: empty, too long, or holding a NUL, which PostgreSQL's text cannot hold (a
    signed callback naming one was answered 500, and a SendGrid batch lost with it)."""
    if not isinstance(text, str) or not text or len(text) > MAX_EFFECT_ID or "\x00" in text:
        return None
    return EffectId(text)


Clock = Callable[[], datetime]
"""The wall clock, injected: outcome times and ledger timestamps come from it."""

Sleep = Callable[[float], Awaitable[None]]
"""`asyncio.sleep`, injected so retries and rate limits are instant and observable in tests."""

Random = Callable[[], float]
"""A float in [0, 1): the jitter of the retry schedule, injected for deterministic tests."""

Publish = Callable[[str, CloudEvent], Awaitable[None]]
"""Publish one event to a topic named without its prefix (`outcomes`, `contacts`, ...)."""


# -- what a sender answers ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivered:
    """The provider accepted the request: it is sent, whatever happens to it later."""

    provider: str
    provider_id: str
    # One effect to several recipients (a ring group): those not reached, and why. The
    # effect still counts as sent, as sending it again would reach the others twice.
    undelivered: str | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    """The provider refused for good; sending again would be refused again."""

    reason: str
    code: str | None = None
    opted_out: bool = False  # the recipient unsubscribed at the carrier (Twilio 21610)


@dataclass(frozen=True, slots=True)
class Transient:
    """Refused for now (429, 503, a connection never made): nothing was sent, so a retry is safe."""

    reason: str
    code: str | None = None
    retry_after: float | None = None
    # The provider refused our credentials (401): every send would be refused alike, so
    # the processor stops for an operator rather than failing a backlog of steps.
    credentials: bool = False


@dataclass(frozen=True, slots=True)
class Ambiguous:
    """The request may or may not have been carried out (a read timeout, a reset): never resend."""

    reason: str


SendResult = Delivered | Rejected | Transient | Ambiguous


# -- what a sender is asked ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SmsMessage:
    effect_id: EffectId
    to: str
    from_number: str
    body: str
    media_urls: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CallRequest:
    effect_id: EffectId
    to: str
    from_number: str
    mode: str  # progressive | preview
    ring_group: str
    agent_numbers: tuple[str, ...]
    message: str
    repeat_message: bool


@dataclass(frozen=True, slots=True)
class VoicemailRequest:
    effect_id: EffectId
    to: str
    from_number: str
    recording_url: str


@dataclass(frozen=True, slots=True)
class EmailMessage:
    effect_id: EffectId
    to: tuple[str, ...]  # one mail; each recipient sees only their own address
    subject: str
    body: str
    from_email: str | None
    # Mail to a contact is commercial: it gets the unsubscribe group and the postal footer.
    # A notification to one of the account's users is not.
    commercial: bool


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    effect_id: EffectId
    url: str
    payload: object


class SmsSender(Protocol):
    async def send_sms(self, message: SmsMessage) -> SendResult: ...


class CallPlacer(Protocol):
    async def place_call(self, call: CallRequest) -> SendResult: ...


class VoicemailDropper(Protocol):
    async def drop_voicemail(self, voicemail: VoicemailRequest) -> SendResult: ...


class EmailSender(Protocol):
    async def send_email(self, message: EmailMessage) -> SendResult: ...


class WebhookPoster(Protocol):
    async def post(self, hook: WebhookRequest) -> SendResult: ...


class PowerDialerQueue(Protocol):
    """The users' power-dialer lists: bookkeeping, not a provider call."""

    async def add(
        self, *, user_id: str, contact_id: str, effect_id: EffectId, at: datetime
    ) -> None: ...

    async def remove(self, *, contact_id: str, user_id: str | None) -> int:
        """Remove the contact from one user's list, or from every list when user_id is None."""
        ...

    async def users_for(self, contact_id: str) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class Senders:
    sms: SmsSender
    calls: CallPlacer
    voicemail: VoicemailDropper
    email: EmailSender
    webhooks: WebhookPoster
    power_dialer: PowerDialerQueue
