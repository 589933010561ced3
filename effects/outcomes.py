"""Outcome events: what the providers answered, as CloudEvents with ids derived from the effect.

An outcome's id is a pure function of the effect id (and of the provider's callback), so
re-emitting one after a crash gives the same id and consumers can drop the duplicate.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from schemas.envelope import EFFECTS_SOURCE, ENGINE_SOURCE, CloudEvent
from schemas.registry import EVENT_TYPES

EFFECT_SENT = "effect.sent"
EFFECT_FAILED = "effect.failed"
EFFECT_UNKNOWN = "effect.unknown"
EFFECT_STATUS_CHANGED = "effect.status_changed"
DIALER_KEY_PRESSED = "dialer.key_pressed"
CONTACT_OPTED_OUT = "contact.opted_out"
CONTACT_DNC_CHANGED = "contact.dnc_changed"
MESSAGE_RECEIVED = "message.received"
CALL_COMPLETED = "call.completed"
LEAD_EMAIL_RECEIVED = "lead.email_received"


def _version(kind: str) -> int:
    return EVENT_TYPES[kind].version


def _event(
    event_id: str, kind: str, at: datetime, context: Mapping[str, Any], data: Mapping[str, Any]
) -> CloudEvent:
    payload = {**context, **data}
    subject = payload.get("contact_id")
    return CloudEvent(
        id=event_id,
        source=ENGINE_SOURCE,
        type=kind,
        time=at,
        subject=subject if isinstance(subject, str) else None,
        data=payload,
        dataversion=_version(kind),
    )


def effect_sent(
    effect_id: str,
    context: Mapping[str, Any],
    provider: str,
    provider_id: str,
    at: datetime,
    undelivered: str | None = None,
) -> CloudEvent:
    """`undelivered`: the recipients of a ring group the provider did not reach, and why."""
    data = {"effect_id": effect_id, "provider": provider, "provider_id": provider_id}
    if undelivered:
        data["undelivered"] = undelivered
    return _event(f"{effect_id}/sent", EFFECT_SENT, at, context, data)


def effect_failed(
    effect_id: str, context: Mapping[str, Any], reason: str, code: str | None, at: datetime
) -> CloudEvent:
    return _event(
        f"{effect_id}/failed",
        EFFECT_FAILED,
        at,
        context,
        {"effect_id": effect_id, "reason": reason, "code": code},
    )


def effect_unknown(
    effect_id: str, context: Mapping[str, Any], reason: str, at: datetime
) -> CloudEvent:
    return _event(
        f"{effect_id}/unknown",
        EFFECT_UNKNOWN,
        at,
        context,
        {"effect_id": effect_id, "reason": reason},
    )


def effect_status_changed(
    effect_id: str,
    context: Mapping[str, Any],
    provider: str,
    provider_id: str,
    status: str,
    at: datetime,
    *,
    callback_key: str,
) -> CloudEvent:
    """`callback_key` names the provider's callback (call or message sid, event id)."""
    return _event(
        f"{effect_id}/status/{callback_key}/{status}",
        EFFECT_STATUS_CHANGED,
        at,
        context,
        {
            "effect_id": effect_id,
            "provider": provider,
            "provider_id": provider_id,
            "status": status,
        },
    )


def contact_opted_out(
    effect_id: str, context: Mapping[str, Any], channel: str, reason: str, at: datetime
) -> CloudEvent:
    """An input fact for the engine, caused by an effect (carrier 21610, or a key 9)."""
    return _contact_fact(
        f"{effect_id}/opted_out", CONTACT_OPTED_OUT, context, at, channel=channel, reason=reason
    )


def contact_put_on_dnc(
    effect_id: str, context: Mapping[str, Any], reason: str, at: datetime
) -> CloudEvent:
    """An input fact for the engine: the contact asked not to be contacted at all (a key 9
    on a dialer call). An opt-out covers messages only (CONTRACT.md §2); DNC stops calls."""
    return _contact_fact(
        f"{effect_id}/dnc", CONTACT_DNC_CHANGED, context, at, dnc=True, reason=reason
    )


def _contact_fact(
    event_id: str, kind: str, context: Mapping[str, Any], at: datetime, **data: Any
) -> CloudEvent:
    """A contact change `effects` learnt of, written back to `contacts` for the engine."""
    contact_id = context.get("contact_id")
    return CloudEvent(
        id=event_id,
        source=EFFECTS_SOURCE,
        type=kind,
        time=at,
        subject=contact_id if isinstance(contact_id, str) else None,
        data={"contact_id": contact_id, **data},
        dataversion=_version(kind),
    )


def dialer_key_pressed(
    effect_id: str,
    context: Mapping[str, Any],
    *,
    call_sid: str,
    digit: str,
    action: str,
    mode: str,
    at: datetime,
) -> CloudEvent:
    """`mode` says who pressed: the contact on a progressive call, an agent on a preview
    one (whose leg rings before the contact's)."""
    return _event(
        f"{effect_id}/key/{call_sid}/{digit}",
        DIALER_KEY_PRESSED,
        at,
        context,
        {
            "effect_id": effect_id,
            "digit": digit,
            "action": action,
            "call_sid": call_sid,
            "mode": mode,
        },
    )


def call_completed(
    effect_id: str,
    context: Mapping[str, Any],
    *,
    call_sid: str,
    answered: bool,
    duration: int | None,
    at: datetime,
) -> CloudEvent:
    """An input fact for the engine: a call dripstream placed to the contact has ended
    (the phone system for the calls it places, as for the texts it receives). Answered, it
    is a response (the seed: removed "if they ... answer a call")."""
    contact_id = context.get("contact_id")
    data: dict[str, Any] = {
        "call_id": call_sid,
        "contact_id": contact_id,
        "direction": "outbound",
        "answered": answered,
        "manual": False,
        "effect_id": effect_id,
        "sequence_id": context.get("sequence_id"),
    }
    if duration is not None:
        data["duration"] = duration
    return CloudEvent(
        id=f"{effect_id}/call/{call_sid}",
        # Not the engine's own source: the engine passes over its own events read back.
        source=EFFECTS_SOURCE,
        type=CALL_COMPLETED,
        time=at,
        subject=contact_id if isinstance(contact_id, str) else None,
        data=data,
        dataversion=_version(CALL_COMPLETED),
    )
