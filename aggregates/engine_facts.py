"""The rules for upstream facts (contacts, calls, messages, appointments, lead e-mails) and
for requests to enroll or remove contacts by hand."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aggregates.contact import ContactState
from aggregates.decisions import LeadRejected, SequenceCommandRejected
from aggregates.engine_core import EngineCore
from aggregates.intake import LeadProblem, contact_id_for_lead, parse_lead_email
from aggregates.intake_addresses import intake_candidates
from aggregates.keywords import keyword_intent
from aggregates.outputs import Outputs
from aggregates.targets import ON_PARTITION, targets_of


class FactRules(EngineCore):
    """What each input fact changes in the contact's state, and whom it enrolls or stops."""

    def _on_contact_created(self, data: Mapping[str, Any], out: Outputs) -> None:
        contact_id = str(data["contact_id"])
        before = self._contact(contact_id)
        if before.created:
            # Created again (an upsert, or the same contact from a second system): not a
            # new contact, so only what changed counts, as in an update.
            self._on_contact_updated(data, out)
            return
        contact = before.with_profile(data, created=True)
        self.contacts[contact_id] = contact
        self.addresses.update(before, contact)
        self._run_triggers("contact_created", contact_id, None, out)
        # A contact created with tags, on DNC or with a disposition has had them added:
        # the same triggers fire as when an update adds them.
        self._run_profile_triggers(contact_id, before, contact, out, created=True)

    def _on_contact_updated(self, data: Mapping[str, Any], out: Outputs) -> None:
        contact_id = str(data["contact_id"])
        before = self._contact(contact_id)
        after = before.with_profile(data)
        self.contacts[contact_id] = after
        self.addresses.update(before, after)
        self._run_profile_triggers(contact_id, before, after, out)

    def _run_profile_triggers(
        self,
        contact_id: str,
        before: ContactState,
        after: ContactState,
        out: Outputs,
        *,
        created: bool = False,
    ) -> None:
        """The triggers of what a profile adds, changes or (for an update) removes. A
        creation only adds: what it leaves out of what was known before (a tag a step added
        meanwhile) was not removed, and a tag known before it (tagged ahead of the CRM's
        creation) was added then, not now."""
        for tag in sorted(after.tags - before.tags):
            self._run_triggers("contact_tagged", contact_id, tag, out)
        if not created:
            for tag in sorted(before.tags - after.tags):
                self._run_triggers("tag_removed", contact_id, tag, out)
        if after.dnc != before.dnc and (after.dnc or not created):
            self._run_triggers("dnc_changed", contact_id, "added" if after.dnc else "removed", out)
        if after.disposition is not None and after.disposition != before.disposition:
            self._run_triggers("contact_disposition", contact_id, after.disposition, out)

    def _on_tag_added(self, data: Mapping[str, Any], out: Outputs) -> None:
        contact_id, tag = str(data["contact_id"]), str(data["tag"])
        self.contacts[contact_id] = self._contact(contact_id).with_tag(tag, present=True)
        self._run_triggers("contact_tagged", contact_id, tag, out)

    def _on_tag_removed(self, data: Mapping[str, Any], out: Outputs) -> None:
        contact_id, tag = str(data["contact_id"]), str(data["tag"])
        self.contacts[contact_id] = self._contact(contact_id).with_tag(tag, present=False)
        self._run_triggers("tag_removed", contact_id, tag, out)

    def _on_disposition_changed(self, data: Mapping[str, Any], out: Outputs) -> None:
        contact_id, disposition = str(data["contact_id"]), str(data["disposition"])
        self.contacts[contact_id] = self._contact(contact_id).changed({"disposition": disposition})
        self._run_triggers("contact_disposition", contact_id, disposition, out)

    def _on_dnc_changed(self, data: Mapping[str, Any], out: Outputs) -> None:
        contact_id, dnc = str(data["contact_id"]), bool(data["dnc"])
        before = self._contact(contact_id)
        self.contacts[contact_id] = before.changed({"dnc": dnc}) if before.dnc != dnc else before
        if before.dnc != dnc:
            # Added to or removed from the list: a repeat of the same state is neither.
            self._run_triggers("dnc_changed", contact_id, "added" if dnc else "removed", out)

    def _on_opted_out(self, data: Mapping[str, Any], out: Outputs) -> None:
        contact_id = str(data["contact_id"])
        channel = str(data.get("channel") or "all")
        self.contacts[contact_id] = self._contact(contact_id).with_opt_out(channel, opted_out=True)
        self._stop_where(contact_id, "opted_out", out, lambda s: s.remove_on_opt_out)

    def _on_opted_in(self, data: Mapping[str, Any], _out: Outputs) -> None:
        contact_id = str(data["contact_id"])
        channel = str(data.get("channel") or "all")
        self.contacts[contact_id] = self._contact(contact_id).with_opt_out(channel, opted_out=False)

    def _on_message_received(self, data: Mapping[str, Any], out: Outputs) -> None:
        contact_id = str(data["contact_id"])
        self._mark_communicated(contact_id)
        if data.get("channel") == "sms":
            intent = keyword_intent(data.get("body"))
            if intent is not None:
                kind = "contact.opted_out" if intent == "opt_out" else "contact.opted_in"
                payload = {
                    "contact_id": contact_id,
                    "channel": "sms",
                    "message_id": data.get("message_id"),
                }
                self._emit_change(kind, contact_id, payload, out, apply_now=True)
        self._stop_where(contact_id, "responded", out, lambda s: s.remove_on_response)

    def _on_call_completed(self, data: Mapping[str, Any], out: Outputs) -> None:
        contact_id = str(data["contact_id"])
        inbound = data.get("direction") == "inbound"
        manual = bool(data.get("manual", False))
        answered = bool(data.get("answered", False))
        if inbound or answered:
            # The contact called, or took a call and so spoke with an agent (a dialer
            # connects them to one): what a response is below, too.
            self._mark_communicated(contact_id)
        else:
            self._contact(contact_id)
        if not inbound:
            self._run_call_duration(contact_id, data, out)
        if not inbound and manual:
            self._stop_where(contact_id, "manual_call", out, lambda s: s.remove_on_manual_call)
        if inbound or answered:
            # An inbound call, or any call the contact answered (the seed: removed "if they
            # respond to a message or answer a call"), is a response; a sequence that
            # removes on manual calls has already said so above, with the narrower reason.
            self._stop_where(contact_id, "responded", out, lambda s: s.remove_on_response)
        disposition = data.get("disposition")
        if disposition:
            self._run_triggers("call_disposition", contact_id, str(disposition), out)

    def _mark_communicated(self, contact_id: str) -> None:
        contact = self._contact(contact_id)
        if not contact.communicated:
            self.contacts[contact_id] = contact.changed({"communicated": True})

    def _on_appointment_changed(self, data: Mapping[str, Any], out: Outputs) -> None:
        contact_id = str(data["contact_id"])
        self._contact(contact_id)
        self._run_triggers("appointment", contact_id, str(data["status"]), out)

    def _on_enrollment_requested(self, data: Mapping[str, Any], out: Outputs) -> None:
        sequence = self.sequences.get(str(data["sequence_id"]))
        for contact_id in self._targets(data):
            if sequence is None:
                contact = self._contact(contact_id)
                out.add(
                    self._rejected(str(data["sequence_id"]), contact, "sequence_invalid", "manual")
                )
            else:
                self._enroll(sequence, contact_id, "manual", out)

    def _on_removal_requested(self, data: Mapping[str, Any], out: Outputs) -> None:
        """Take contacts out of a sequence by hand (the seed's "Contacts: manage the
        contacts enrolled"): each one enrolled now is disenrolled, `manual`; the others
        have nothing to leave. Targets as for an enrollment request, fanned out alike."""
        sequence = self.sequences.get(str(data["sequence_id"]))
        on = data.get(ON_PARTITION)
        if sequence is None:
            # Said once, not by every partition's copy of a fanned-out request.
            if on in (None, 0):
                command, reason = "enrollment.removal_requested", "unknown_sequence"
                sequence_id = str(data["sequence_id"])
                out.add(SequenceCommandRejected(self._clock(), command, sequence_id, reason))
            return
        for contact_id in self._targets(data):
            self._stop_in(sequence, contact_id, "manual", out)

    def _targets(self, data: Mapping[str, Any]) -> list[str]:
        """The contacts an enrollment or removal request names, in a stable order without
        repeats. One partition's copy of a request a worker fanned out to every partition
        (streams/routing.py) stands for the contacts of that partition only."""
        targets = targets_of(data)
        chosen = dict.fromkeys(targets.contact_ids)
        for tag, line in targets.selectors:
            chosen.update(dict.fromkeys(self._matching(tag, line)))
        on = data.get(ON_PARTITION)
        if on is not None and self._partition_of is not None:
            return [c for c in chosen if self._partition_of(c) == on]
        return list(chosen)

    def _matching(self, tag: str | None, line: str | None) -> list[str]:
        if tag is not None:
            return sorted(c.contact_id for c in self.contacts.values() if tag in c.tags)
        return sorted(c.contact_id for c in self.contacts.values() if c.line_id == line)

    def _on_lead_email(self, data: Mapping[str, Any], out: Outputs) -> None:
        candidates = intake_candidates(str(data["to"]))
        now = self._clock()
        sender = data.get("from")
        to = next((a for a in candidates if self._triggers.intake(a)), candidates[0])
        sequence = self._triggers.intake(to)
        if sequence is None:
            listed = ", ".join(candidates)
            reason = (
                f"no sequence has the intake address {to}"
                if len(candidates) == 1
                else f"no sequence has any of the intake addresses {listed}"
            )
            out.add(LeadRejected(now, to, reason, sender))
            return
        lead = parse_lead_email(subject=data.get("subject"), body=str(data["body"]), sender=sender)
        if isinstance(lead, LeadProblem):
            out.add(LeadRejected(now, to, lead.reason, sender, sequence.id))
            return
        # The contact the lead already is, else a new one named by its address.
        named = contact_id_for_lead(lead)
        within = self._lead_partition(named)
        known = self.addresses.lead_contact(lead.email, lead.phone, self._email_of, within)
        contact_id = known or named
        exists = contact_id in self.contacts
        fields = {
            "first_name": lead.first_name,
            "last_name": lead.last_name,
            "phone": lead.phone,
            "email": lead.email,
            "state": lead.state,
            # The default names a new contact's origin; it never overwrites a known source.
            "lead_source": lead.lead_source or (None if exists else "email_intake"),
            "timezone": lead.timezone,
        }
        before = self._contact(contact_id)
        # A known contact's update names what the lead changes: the same lead mailed again
        # changes nothing, and its history would otherwise say each field "changed".
        profile = {
            "contact_id": contact_id,
            **{
                k: v
                for k, v in fields.items()
                if v is not None and not (exists and getattr(before, k) == v)
            },
        }
        self.contacts[contact_id] = after = before.with_profile(profile)
        self.addresses.update(before, after)
        if not exists or len(profile) > 1:
            kind = "contact.updated" if exists else "contact.created"
            self._emit_change(
                kind, contact_id, {**profile, "sequence_id": sequence.id}, out, apply_now=False
            )
        self._bind_suppressions(after, sequence.id, out, within)
        self._enroll(sequence, contact_id, "intake", out)
        if not exists:
            # Other sequences' contact_created triggers see the new contact too; the intake
            # sequence itself has just enrolled it (once: its steps may already be done).
            self._run_triggers("contact_created", contact_id, None, out, skip=sequence.id)

    def _email_of(self, contact_id: str) -> str | None:
        contact = self.contacts.get(contact_id)
        return contact.email if contact else None

    def _lead_partition(self, named: str) -> Callable[[str], bool]:
        """Which contacts a lead named `named` may be matched to. On Kafka (a partition
        function is set) only those of the partition the lead is decided in: what a
        partition decides then rests on its own inputs alone, the same however partitions
        are spread over workers, before a rebalance and after it (a rebuild decides each
        partition's stored inputs again). In a replay, every contact."""
        partition_of = self._partition_of
        if partition_of is None:
            return lambda _: True
        home = partition_of(named)
        return lambda contact_id: partition_of(contact_id) == home

    def _bind_suppressions(
        self,
        lead: ContactState,
        sequence_id: str,
        out: Outputs,
        within: Callable[[str], bool],
    ) -> None:
        """A lead's number or address that another contact put on DNC or opted out stays
        so for the lead: said as the engine's own changes, applied before it is enrolled."""
        others = [self.contacts[c] for c in self.addresses.sharing(lead, within)]
        same_phone = [c for c in others if lead.phone and c.phone == lead.phone]
        same_email = [
            c for c in others if lead.email and (c.email or "").casefold() == lead.email.casefold()
        ]
        base = {"contact_id": lead.contact_id, "sequence_id": sequence_id}
        if not lead.dnc and any(c.dnc for c in same_phone):
            self._emit_change(
                "contact.dnc_changed", lead.contact_id, {**base, "dnc": True}, out, apply_now=True
            )
        for channel, bound in (("sms", same_phone), ("email", same_email)):
            if not lead.is_opted_out(channel) and any(c.is_opted_out(channel) for c in bound):
                self._emit_change(
                    "contact.opted_out",
                    lead.contact_id,
                    {**base, "channel": channel},
                    out,
                    apply_now=True,
                )
