"""A provider's word on an effect it was sent (a status callback, a delivery event), as outcomes.

Any such word proves the provider accepted the request, so an effect left `unknown` (a read
timeout) or orphaned `in_flight` is reconciled to `sent`: the one way a send in doubt gets
settled without being sent again.
"""

from __future__ import annotations

import logging
from datetime import datetime

from effects import outcomes
from effects.commands import (
    CALL_DIAL,
    EMAIL_SEND,
    MMS_SEND,
    NOTIFY_EMAIL,
    NOTIFY_SMS,
    SMS_SEND,
    VOICEMAIL_DROP,
)
from effects.ledger import IN_FLIGHT, UNKNOWN, Ledger, LedgerEntry
from effects.ports import EffectId
from schemas.envelope import CloudEvent

_log = logging.getLogger(__name__)

# What each provider carries: a word from one about an effect of another's kind (an
# "unsubscribe" from Twilio for an e-mail) is no word on it.
_CARRIES = {
    "twilio": frozenset({SMS_SEND, MMS_SEND, CALL_DIAL, VOICEMAIL_DROP, NOTIFY_SMS}),
    "sendgrid": frozenset({EMAIL_SEND, NOTIFY_EMAIL}),
    "mailgun": frozenset({EMAIL_SEND, NOTIFY_EMAIL}),
}

# The providers' words for "no more e-mail from you": SendGrid's unsubscribe events and
# spam report, Mailgun's unsubscribed and complained.
UNSUBSCRIBED = frozenset(
    {"unsubscribe", "group_unsubscribe", "spamreport", "unsubscribed", "complained"}
)


async def status_outcomes(
    ledger: Ledger,
    effect_id: EffectId,
    entry: LedgerEntry | None,
    *,
    provider: str,
    provider_id: str,
    status: str,
    callback_key: str,
    at: datetime,
) -> list[CloudEvent]:
    """`effect.status_changed`, and `effect.sent` when the status settles a send in doubt.
    `entry` is the effect's ledger row as the caller read it (None: not one of ours). No
    outcome for an effect the provider does not carry, nor for one this ledger never had
    (another deployment's, on a webhook both share): it would name no contact."""
    if entry is None:
        _log.info(
            "passed over %s status %r for %s, not in this ledger", provider, status, effect_id
        )
        return []
    if entry.type not in _CARRIES.get(provider, {entry.type}):
        _log.warning(
            "passed over %s status %r for %s, a %s", provider, status, effect_id, entry.type
        )
        return []
    context = entry.context
    events = [
        outcomes.effect_status_changed(
            effect_id, context, provider, provider_id, status, at, callback_key=callback_key
        )
    ]
    if entry.type == EMAIL_SEND and status in UNSUBSCRIBED:
        # The contact said no more e-mail (the footer's link, or a spam report): the engine
        # must hear it as an opt-out, or the next e-mail step would try again. One reason
        # for every such word, so a second one (a report after an unsubscribe) is a repeat.
        said = "unsubscribed through an e-mail"
        events.append(outcomes.contact_opted_out(effect_id, context, "email", said, at))
    if entry.status in {UNKNOWN, IN_FLIGHT}:
        reconciled = await ledger.reconcile(effect_id, provider, provider_id, status, at)
        if reconciled is not None:
            _log.info("effect %s reconciled to sent by %s status %s", effect_id, provider, status)
            events.append(
                outcomes.effect_sent(
                    effect_id, context, provider, provider_id, at, _others_in_doubt(entry)
                )
            )
    return events


def _others_in_doubt(entry: LedgerEntry) -> str | None:
    """What a member's status cannot say of a ring group's others: the processor sends to
    them one after another and may have stopped between two, so the outcome must not claim
    that all were reached."""
    data = entry.command.get("data", {})
    fanned_out = entry.type == "notify.sms" or (
        entry.type == "call.dial" and data.get("mode") == "preview"
    )
    members = data.get("ring_group_numbers")
    count = len(set(map(str, members))) if isinstance(members, list) else 0
    if not fanned_out or count < 2:
        return None
    return (
        f"in doubt for the other members of {count}: they are sent to"
        " one after another, the send was left in doubt part way (a processor stopped, or a"
        " provider's answer went unheard), and this status proves only one was reached"
    )
