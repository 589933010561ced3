"""What each step type does when it runs: the effect command or contact change it records.

Nothing is sent here. A step produces `step.executed` plus the command that the effect
processors carry out later, keyed by a stable effect_id (record first, act after).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from aggregates.calendar import window_close
from aggregates.contact import ContactState
from aggregates.decisions import Decision, EffectRequested, StepExecuted
from aggregates.enrollment import Enrollment
from aggregates.ids import effect_id
from aggregates.sequence import Account, Sequence, Step
from aggregates.templating import render, with_opt_out
from schemas.envelope import format_time
from schemas.immutable import immutable

# The commands that reach a contact by phone: held to the quiet hours (CONTRACT.md §3).
TO_CONTACT_BY_PHONE = frozenset({"sms.send", "mms.send", "call.dial", "voicemail.drop"})

# Picks the next owner of a round-robin step: (sequence_id, step_id, owners) -> owner.
RoundRobin = Callable[[str, str, tuple[str, ...]], str]
# A step's effect: the command's (or contact change's) type and data.
Made = tuple[str, dict[str, Any]]
# Notes an owner change so the owner can be told (batched per minute by the engine):
# sequence, owner, contact, the step and its effect id, when.
OwnerAssigned = Callable[[str, str, str, str, str, datetime], None]


@immutable
class StepContext:
    account: Account
    sequence: Sequence
    contact: ContactState
    round_robin: RoundRobin
    owner_assigned: OwnerAssigned
    zone: ZoneInfo

    def perform(self, step: Step, enrollment: Enrollment, now: datetime) -> list[Decision]:
        fx = effect_id(enrollment.sequence_id, enrollment.contact_id, enrollment.number, step.id)
        base = {
            "effect_id": fx,
            "step_id": step.id,
            "sequence_id": enrollment.sequence_id,
            "contact_id": enrollment.contact_id,
            "enrollment_id": enrollment.enrollment_id,
        }
        executed = StepExecuted(
            now,
            enrollment.sequence_id,
            enrollment.contact_id,
            enrollment.enrollment_id,
            step_id=step.id,
            effect_id=fx,
        )
        kind, data = self._effect(step, base, now)
        if kind in TO_CONTACT_BY_PHONE and (deadline := self._send_before(now)):
            # Effects may carry a command out late (a backlog after an outage): the quiet
            # hours the engine checked at `now` must still hold when it reaches the contact.
            data = {**data, "send_before": deadline}
        return [executed, EffectRequested(now, kind, enrollment.contact_id, data)]

    def _send_before(self, now: datetime) -> str | None:
        quiet = self.sequence.calendar.quiet_hours
        close = window_close(now, self.zone, quiet) if quiet is not None else None
        return format_time(close) if close is not None else None

    def _shortcodes(self) -> dict[str, str | None]:
        return self.contact.template_values(self.account.user_name(self.contact.owner_id))

    def _text(self, step: Step, key: str) -> str:
        return render(str(step.get(key) or ""), self._shortcodes())

    def _line(self) -> dict[str, Any]:
        line = self.sequence.outbound_line
        return {"from_line": line, "from_number": self.account.lines.get(line) if line else None}

    def _ring_group(self, step: Step) -> dict[str, Any]:
        group = str(step.get("ring_group") or "")
        members = self.account.ring_groups.get(group, ())
        users = [self.account.users[m] for m in members if m in self.account.users]
        # Each number and address once: two members sharing a desk phone get one text.
        return {
            "ring_group": group,
            "ring_group_numbers": list(dict.fromkeys(u.phone for u in users if u.phone)),
            "ring_group_emails": list(dict.fromkeys(u.email for u in users if u.email)),
        }

    def _contact_card(self) -> dict[str, Any]:
        c = self.contact
        return {
            "contact_id": c.contact_id,
            "name": c.name or None,
            "phone": c.phone,
            "email": c.email,
            "state": c.state,
            "owner_id": c.owner_id,
            "tags": sorted(c.tags),
            "disposition": c.disposition,
        }

    def _contact_profile(self) -> dict[str, Any]:
        """What a webhook carries: the seed's "the enrolled contact's information"."""
        c = self.contact
        return {
            **self._contact_card(),
            "first_name": c.first_name,
            "last_name": c.last_name,
            "timezone": c.timezone,
            "lead_source": c.lead_source,
            "line_id": c.line_id,
            "tracking_number": c.tracking_number,
            "dnc": c.dnc,
            "opted_out": sorted(c.opted_out),
        }

    def _url(self, step: Step) -> str:
        """The webhook's address, its shortcodes filled in and percent-encoded (an unknown
        `[name]` stays as written: brackets are common in query strings)."""
        encoded = {
            k: quote(v.strip(), safe="") if v else None for k, v in self._shortcodes().items()
        }
        return render(str(step.get("url") or ""), encoded)

    def _effect(self, step: Step, base: dict[str, Any], now: datetime) -> Made:
        make = _MAKERS.get(step.type)
        if make is None:
            raise TypeError(f"unknown step type {step.type!r}")
        return make(self, step, base, now)

    def _sms(self, step: Step, base: dict[str, Any], _now: datetime) -> Made:
        body = with_opt_out(self._text(step, "text"), self.account.opt_out_phrase)
        return "sms.send", {**base, "to": self.contact.phone, **self._line(), "body": body}

    def _mms(self, step: Step, base: dict[str, Any], _now: datetime) -> Made:
        body = with_opt_out(self._text(step, "text"), self.account.opt_out_phrase)
        return "mms.send", {
            **base,
            "to": self.contact.phone,
            **self._line(),
            "body": body,
            "media_url": step.get("media_url"),
        }

    def _email(self, step: Step, base: dict[str, Any], _now: datetime) -> Made:
        return "email.send", {
            **base,
            "to": self.contact.email,
            "subject": self._text(step, "subject"),
            "body": self._text(step, "body"),
        }

    def _dial(self, step: Step, base: dict[str, Any], _now: datetime) -> Made:
        return "call.dial", {
            **base,
            "to": self.contact.phone,
            "mode": "progressive" if step.type == "progressive_dialer" else "preview",
            **self._ring_group(step),
            **self._line(),
            "message": self._text(step, "message"),
            "repeat_message": bool(step.get("repeat_message", False)),
        }

    def _to_power_dialer(self, step: Step, base: dict[str, Any], _now: datetime) -> Made:
        return "power_dialer.added", {
            **base,
            "user_id": step.get("user_id") or self.contact.owner_id,
        }

    def _off_power_dialer(self, step: Step, base: dict[str, Any], _now: datetime) -> Made:
        all_users = bool(step.get("all_users", not step.get("user_id")))
        # Not from everyone's list and no user named: from the owner's, whose list a
        # `power_dialer` step with no user puts the contact in.
        user = step.get("user_id") or (None if all_users else self.contact.owner_id)
        return "power_dialer.removed", {**base, "user_id": user, "all_users": all_users}

    def _voicemail(self, step: Step, base: dict[str, Any], _now: datetime) -> Made:
        return "voicemail.drop", {
            **base,
            "to": self.contact.phone,
            **self._line(),
            "recording_url": step.get("recording_url"),
        }

    def _ring_group_sms(self, step: Step, base: dict[str, Any], _now: datetime) -> Made:
        card = self._contact_card()
        body = f"{self._text(step, 'text')}\n{_card_line(card)}".strip()
        return "notify.sms", {
            **base,
            "to": step.get("ring_group"),
            **self._ring_group(step),
            **self._line(),
            "body": body,
            "contact": card,
        }

    def _ring_group_email(self, step: Step, base: dict[str, Any], _now: datetime) -> Made:
        card = self._contact_card()
        body = f"{self._text(step, 'body')}\n\n{_card_line(card)}".strip()
        return "notify.email", {
            **base,
            "to": step.get("ring_group"),
            **self._ring_group(step),
            "subject": self._text(step, "subject"),
            "body": body,
            "contact": card,
        }

    def _webhook(self, step: Step, base: dict[str, Any], _now: datetime) -> Made:
        payload = {
            "event": "sequence.step",
            "sequence_id": base["sequence_id"],
            "step_id": step.id,
            "enrollment_id": base["enrollment_id"],
            "contact": self._contact_profile(),
        }
        return "webhook.post", {**base, "url": self._url(step), "payload": payload}

    def _tag(self, step: Step, base: dict[str, Any], _now: datetime) -> Made:
        kind = "contact.tag_added" if step.type == "add_tag" else "contact.tag_removed"
        return kind, {**base, "tag": step.get("tag")}

    def _disposition(self, step: Step, base: dict[str, Any], _now: datetime) -> Made:
        return "contact.disposition_changed", {**base, "disposition": step.get("disposition")}

    def _dnc(self, _step: Step, base: dict[str, Any], _now: datetime) -> Made:
        return "contact.dnc_changed", {**base, "dnc": True}

    def _owner(self, step: Step, base: dict[str, Any], now: datetime) -> Made:
        if step.type == "change_owner":
            owner = str(step.get("owner_id"))
        else:
            owners = tuple(str(o) for o in step.get("owners") or ())
            owner = self.round_robin(base["sequence_id"], step.id, owners)
        contact = self.contact
        if owner != contact.owner_id:
            # The seed tells the owner of a *new* contact: one they already own is not.
            self.owner_assigned(
                base["sequence_id"], owner, contact.contact_id, step.id, base["effect_id"], now
            )
        return "contact.updated", {**base, "owner_id": owner}

    def _line_change(self, step: Step, base: dict[str, Any], _now: datetime) -> Made:
        return "contact.updated", {**base, "line_id": step.get("line_id")}

    def _lead_source(self, step: Step, base: dict[str, Any], _now: datetime) -> Made:
        return "contact.updated", {**base, "lead_source": step.get("lead_source")}


# What a step type makes: the command or contact change its step.executed brings.
_MAKERS: dict[str, Callable[[StepContext, Step, dict[str, Any], datetime], Made]] = {
    "send_sms": StepContext._sms,
    "send_mms": StepContext._mms,
    "email_contact": StepContext._email,
    "progressive_dialer": StepContext._dial,
    "preview_dialer": StepContext._dial,
    "power_dialer": StepContext._to_power_dialer,
    "remove_from_power_dialer": StepContext._off_power_dialer,
    "ringless_voicemail": StepContext._voicemail,
    "sms_ring_group": StepContext._ring_group_sms,
    "email_ring_group": StepContext._ring_group_email,
    "send_webhook": StepContext._webhook,
    "add_tag": StepContext._tag,
    "remove_tag": StepContext._tag,
    "change_disposition": StepContext._disposition,
    "mark_dnc": StepContext._dnc,
    "change_owner": StepContext._owner,
    "round_robin_owner": StepContext._owner,
    "add_line": StepContext._line_change,
    "change_lead_source": StepContext._lead_source,
}


def _card_line(card: dict[str, Any]) -> str:
    parts = [card.get("name"), card.get("phone"), card.get("email")]
    return "Contact: " + ", ".join(str(p) for p in parts if p)
