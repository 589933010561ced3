"""The engine: folds input facts and due timers into decisions, deterministically.

It owns the contacts' states, the active enrollments, the timer queue and the per-sequence
counters (throttle, round robin, owner notices). It is pure: the clock is the event time
handed in, ids derive from the input that caused them, and nothing is sent or stored here.
Runners (streams/) feed it events in order and persist or publish what it returns.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from aggregates.addresses import AddressBook
from aggregates.calendar import within_open_hours
from aggregates.contact import ContactState
from aggregates.decisions import (
    ContactEnrolled,
    Decision,
    EffectRequested,
    EnrollmentRejected,
    LeadRejected,
    SequenceCommandRejected,
    SequenceDefined,
    SequenceDeleted,
)
from aggregates.duplicates import RecentIdentities, ReusedIdentityError
from aggregates.enrollment import (
    Enrollment,
    decide_advance,
    decide_displaced,
    decide_stop,
    evolve,
    first_not_passed,
)
from aggregates.ids import contact_of, enrollment_id
from aggregates.intake import (
    LeadProblem,
    contact_id_for_lead,
    intake_address,
    parse_lead_email,
)
from aggregates.keywords import keyword_intent
from aggregates.outputs import Outputs
from aggregates.owner_notices import Assignment, OwnerNotices, describe, window_of
from aggregates.sequence import (
    Account,
    Catalog,
    Sequence,
    Step,
    build_account,
    build_sequence,
)
from aggregates.steps import StepContext
from aggregates.targets import ON_PARTITION, targets_of
from aggregates.throttle import MinuteThrottle
from aggregates.timer_queue import Timer, TimerQueue
from aggregates.timezones import contact_zone
from aggregates.trigger_index import TriggerIndex
from schemas.envelope import ENGINE_SOURCE, CloudEvent, format_time

DEFINITION_COMMANDS = frozenset(
    {"sequence.applied", "sequence.delete_requested", "sequence.copy_requested"}
)


def _timing(step: Step | None) -> tuple[str, str, Any] | None:
    """What decides when a step runs, and which step it is."""
    return None if step is None else (step.id, step.type, step.delay)


class Engine:
    """`partition_of` maps a contact to its input partition: timers then fire by each
    partition's own event time (a worker pushing history through several partitions must
    not fire one contact's timer past an input of that contact it has not read yet)."""

    def __init__(
        self,
        catalog: Catalog | None = None,
        partition_of: Callable[[str], int] | None = None,
        *,
        live: bool = False,
    ) -> None:
        """`live`: the clock is the wall clock (a live worker). A timer that fires after its
        due moment (a poll's delay, a worker down for an hour) is then decided at the moment
        it fires, and checked against the calendar again at that moment: an SMS due at
        20:50 and fired at 21:10 is held to the quiet hours of 21:10. In a history
        (replay, --clock event) a timer is decided at its due moment, as if on time."""
        self.live = live
        self._partition_of = partition_of
        self.account: Account = catalog.account if catalog else Account()
        self.sequences: dict[str, Sequence] = dict(catalog.sequences) if catalog else {}
        self.contacts: dict[str, ContactState] = {}
        self.addresses = AddressBook()  # contacts by phone and e-mail, for leads
        self.enrollments: dict[str, dict[str, Enrollment]] = {}  # contact -> sequence -> active
        self.members: dict[str, set[str]] = {}  # sequence -> active contact ids
        # sequence -> contact -> enrollments so far: numbers re-enrollments. Nested rather
        # than keyed by pairs: it holds every pair ever enrolled, and a tuple per pair was
        # most of its memory.
        self.enrollment_counts: dict[str, dict[str, int]] = {}
        self.timers = TimerQueue(partition_of)
        self.throttle = MinuteThrottle()
        self.round_robin_cursor: dict[tuple[str, str], int] = {}
        self.owner_notices = OwnerNotices()
        self.now: datetime | None = None  # the latest moment seen: the high-water mark
        self._at: datetime | None = None  # the moment of the decision being made
        self._forgot_at: datetime | None = None
        # partition -> its event clock, when partitions keep their own (worker --clock event)
        self._partition_clocks: dict[int, datetime] = {}
        self._expected_partitions: frozenset[int] = frozenset()
        self._triggers = TriggerIndex()
        self._pending: deque[CloudEvent] = deque()
        self._paused: deque[tuple[str, str]] = deque()
        # (sequence, contact) enrolled by the cause being decided (an input, a timer, a
        # definition): one cause enrolls a contact in a sequence once. Without it, two
        # sequences that tag the contact into each other with no delay would go round for
        # ever within one moment, each finished before the other's tag arrives.
        self._enrolled_by_cause: set[tuple[str, str]] = set()
        self._recent = RecentIdentities()
        self.duplicates = 0  # inputs skipped as repeats of one decided before
        self.timers_fired = 0  # timers that came up and were live (steps, notice minutes)
        self._reindex()

    # ---- the public surface -------------------------------------------------------------

    def define(self, document: Mapping[str, Any], at: datetime, cause: str) -> list[CloudEvent]:
        """Apply a definition document (account + sequences): add or replace sequences."""
        out = Outputs(cause)
        self._fire_until(at, out, inclusive=False)
        self._tick(at)
        self._at = at
        self._enrolled_by_cause.clear()
        self._apply_definitions(document, at, out)
        return out.events

    def adopt(
        self, document: Mapping[str, Any], deleted: Iterable[str], at: datetime, cause: str
    ) -> list[CloudEvent]:
        """Take definitions another worker recorded: upsert without announcing them, and
        disenroll this engine's own members of deleted sequences (CONTRACT.md §1.2)."""
        out = Outputs(cause, per_subject=True)
        self._at = at  # another worker's clock: no timer fires, the high-water mark stays
        self._enrolled_by_cause.clear()
        for spec in self._specs_under(document):
            sequence = build_sequence(spec, self.account)
            previous = self.sequences.get(sequence.id)
            created = sequence.created or (previous.created if previous else None) or at
            self.sequences[sequence.id] = replace(sequence, created=created)
            self._reschedule_changed_steps(previous, self.sequences[sequence.id], out)
        for sequence_id in deleted:
            self._delete(sequence_id, out, announce=False)
        self._reindex()
        self._drain(out)
        return out.events

    def raw_definition(self, sequence_id: str) -> dict[str, Any] | None:
        """The definition of one sequence as a document entry, `created` included."""
        sequence = self.sequences.get(sequence_id)
        if sequence is None:
            return None
        created = sequence.created
        return {**sequence.definition, "created": format_time(created) if created else None}

    def handle(
        self, event: CloudEvent, at: datetime | None = None, partition: int | None = None
    ) -> list[CloudEvent]:
        """Decide on one input at `at` (default: the event's own time). Timers due strictly
        before it fire first: those of `partition`, or all of them when it is None.

        A repeat of an input decided within the last day is skipped (counted in
        `duplicates`); another event under its source and id raises `ReusedIdentityError`
        before anything is decided."""
        moment = at or event.time
        identity, fingerprint = event.identity, event.fingerprint()
        earlier = self._recent.earlier(identity, moment)
        if earlier is not None and earlier != fingerprint:
            # Before anything moves: the caller dead-letters it and nothing was decided.
            raise ReusedIdentityError(event.id, event.source)
        out = Outputs(event.occurrence)
        if event.type not in DEFINITION_COMMANDS:
            # A definition published today must not fire the timers of a history being
            # pushed through by event time, nor move its clock.
            self._fire_until(moment, out, inclusive=False, partition=partition)
            self._note_partition_clock(partition, moment)
            self._tick(moment)
        self._at = moment
        if earlier is not None:
            # The same source and id: the same event again (a retry); its clock counted.
            self.duplicates += 1
            return out.events
        self._recent.remember(identity, moment, fingerprint)
        self._enrolled_by_cause.clear()
        self._process(event, out)
        self._drain(out)
        return out.events

    def remember(self, event: CloudEvent, at: datetime | None = None) -> None:
        """Note `event` as decided at `at` (default: its time) without deciding it: a
        rebuild takes a definition command's change another way, and a repeat of the
        command must still be told from another event under its id."""
        self._recent.remember(event.identity, at or event.time, event.fingerprint())

    def fire_before(self, moment: datetime) -> list[CloudEvent]:
        """Fire every timer due strictly before `moment`. `handle` leaves the clock alone for
        a definition command (a live one carries today's time); in a history, where its
        time is the history's, the timers before it come first (CONTRACT.md §3)."""
        out = Outputs("timers")
        self._fire_until(moment, out, inclusive=False)
        self._tick(moment)
        return out.events

    def advance(self, until: datetime, partition: int | None = None) -> list[CloudEvent]:
        """Fire every timer due up to and including `until` (of one partition, or all)."""
        out = Outputs("timers")
        self._fire_until(until, out, inclusive=True, partition=partition)
        self._note_partition_clock(partition, until)
        self._tick(until)
        return out.events

    def close_notice_windows(self, at: datetime) -> list[CloudEvent]:
        """Send at `at` the owner notices still gathering their minute: the end of a finite
        input (a replay) closes the minute early, so a notice is not lost with it."""
        out = Outputs("timers")
        self._at = at
        for timer in self.timers.take_notices():
            self._flush_owner_notices(timer._replace(due=at), out)
        return out.events

    def next_due(self, partition: int | None = None) -> datetime | None:
        return self.timers.next_due(partition)

    def timers_due(self, moment: datetime, partition: int | None = None) -> int:
        """Steps whose moment has come by `moment` and that have not run yet."""
        return self.timers.due_by(moment, partition)

    def pending_timers(self) -> int:
        """Timers that will fire: stale heap entries (a cancelled or moved step) aside."""
        return self.timers.live()

    def sizes(self) -> dict[str, int]:
        """How much state the engine holds, for benchmarks and the curious."""
        counts = self.enrollment_counts.values()
        return {
            "contacts": len(self.contacts),
            "contacts_with_enrollments": len(self.enrollments),
            "enrollments_ever": sum(sum(per.values()) for per in counts),
            "enrollment_pairs_ever": sum(len(per) for per in counts),
            "timers_in_heap": len(self.timers),
            "timers_live": self.timers.live_steps(),
            "owner_notice_batches": len(self.owner_notices),
        }

    def active_enrollments(self) -> int:
        return sum(len(m) for m in self.members.values())

    # ---- time ----------------------------------------------------------------------------

    def partition_clock(self, partition: int) -> datetime | None:
        """How far `partition`'s event clock has moved (its inputs and fired timers)."""
        return self._partition_clocks.get(partition)

    def expect_partitions(self, partitions: Iterable[int]) -> None:
        """The partitions whose event clocks this engine follows (worker --clock event):
        until each has moved, no throttle minute counts as past for all of them."""
        self._expected_partitions = frozenset(partitions)

    def _note_partition_clock(self, partition: int | None, moment: datetime) -> None:
        if partition is not None:
            known = self._partition_clocks.get(partition)
            if known is None or moment > known:
                self._partition_clocks[partition] = moment

    def _tick(self, moment: datetime) -> None:
        if self.now is None or moment > self.now:
            self.now = moment
            if self._forgot_at is None or moment - self._forgot_at >= timedelta(minutes=5):
                # Throttle minutes in the past are never needed again: drop them now and
                # then, so the counters follow the clock rather than the history's length.
                # Past for every partition: one whose event clock lags still decides in
                # those minutes, and must find them counted.
                clocks = self._partition_clocks
                if any(p not in clocks for p in self._expected_partitions):
                    return  # a partition not read yet may still decide in any minute
                floor = min(clocks.values(), default=moment)
                self.throttle.forget_before(min(floor, moment) - timedelta(minutes=1))
                self._forgot_at = moment

    def _fire_until(
        self, limit: datetime, out: Outputs, *, inclusive: bool, partition: int | None = None
    ) -> None:
        notices = self._notices_until(limit, partition)
        while head := self.timers.pop_due(
            limit, inclusive=inclusive, partition=partition, notices_limit=notices
        ):
            moment = limit if self.live and limit > head.due else head.due
            self._tick(moment)
            self._at = moment
            if head.kind == "step":
                self._fire_step(head, out)
            else:
                self.timers_fired += 1
                self._flush_owner_notices(head, out)

    def _notices_until(self, limit: datetime, partition: int | None) -> datetime | None:
        """Up to when owner notices may be sent while `partition`'s timers fire: a minute's
        notices wait until every partition has left it, as a lagging one may still assign
        owners in it (they would go out in two or more parts, or 21 assignments as 21
        texts instead of one summary). None: not yet."""
        if partition is None:
            return limit
        clocks = self._partition_clocks
        if any(p not in clocks for p in self._expected_partitions if p != partition):
            return None  # a partition not read yet may still assign in any minute
        return min([limit, *(c for p, c in clocks.items() if p != partition)])

    def _drain(self, out: Outputs) -> None:
        """Feed the engine's own contact changes back in, then let the enrollments that
        paused for them go on: a step after `mark_dnc` must see the DNC."""
        while self._pending or self._paused:
            if self._pending:
                change = self._pending.popleft()
                if not self._changes_nothing(change):
                    self._process(change, out)
                continue
            contact_id, sequence_id = self._paused.popleft()
            enrollment = self.enrollments.get(contact_id, {}).get(sequence_id)
            if enrollment is not None and enrollment.due_at is None:
                self._advance(enrollment, out)

    def _changes_nothing(self, change: CloudEvent) -> bool:
        """Whether a step's contact change leaves the contact as it was (a tag it already
        has, a disposition it already is): then no tag or disposition trigger fires, as
        nothing was added, removed or changed. An upstream fact is taken as it says."""
        data = change.data
        contact = self.contacts.get(str(data["contact_id"]))
        if contact is None:
            return False
        match change.type:
            case "contact.tag_added":
                return data["tag"] in contact.tags
            case "contact.tag_removed":
                return data["tag"] not in contact.tags
            case "contact.disposition_changed":
                return bool(contact.disposition == data["disposition"])
        return False

    # ---- definitions ---------------------------------------------------------------------

    def _apply_definitions(self, document: Mapping[str, Any], at: datetime, out: Outputs) -> None:
        for spec in self._specs_under(document):
            sequence = build_sequence(spec, self.account)
            previous = self.sequences.get(sequence.id)
            created = sequence.created or (previous.created if previous else None) or at
            sequence = replace(sequence, created=created)
            self.sequences[sequence.id] = sequence
            out.add(SequenceDefined(at, self._definition_payload(sequence)))
            self._reschedule_changed_steps(previous, sequence, out)
        self._reindex()

    def _reschedule_changed_steps(
        self, previous: Sequence | None, sequence: Sequence, out: Outputs
    ) -> None:
        """After a redefinition an active enrollment goes on by step id: with the first step
        of the new steps it has not passed (each step runs once, wherever an edit moved it).
        When that is not the step it was waiting for (another id, type or delay), it is
        scheduled again, its delay counted as ever from the step passed last; or it
        completes. A step whose text alone changed keeps its moment (the text is read when
        it runs). An edit that makes the sequence invalid holds its enrollments (no timer,
        no throttle place); one that puts it right lets them go on."""
        if previous is None:
            return
        broken = sequence.problems and not previous.problems
        resumed = previous.problems and not sequence.problems
        if previous.steps == sequence.steps and not broken and not resumed:
            return
        # Every member's place first, its old timer and throttle place dropped when its step
        # is to be scheduled again: scheduling one may displace another from its minute,
        # and that one must be read at its new place, or be held no place at all.
        again: list[tuple[str, str]] = []
        for contact_id in sorted(self.members.get(sequence.id, ())):
            enrollment = self.enrollments[contact_id][sequence.id]
            old = enrollment.next_step
            before = previous.steps[old] if old < len(previous.steps) else None
            index = first_not_passed(sequence.steps, enrollment.passed)
            now = sequence.steps[index] if index < len(sequence.steps) else None
            held = enrollment.due_at is None  # held while the sequence was invalid
            same = not held and _timing(before) == _timing(now)
            unscheduled = not held and (broken or not same)
            if unscheduled:
                self.throttle.release(enrollment.enrollment_id)
                self.timers.cancel(enrollment.enrollment_id)
            if index != old or unscheduled:
                moment = None if unscheduled else enrollment.due_at
                enrollment = replace(enrollment, next_step=index, due_at=moment)
                self.enrollments[contact_id][sequence.id] = enrollment
            if not sequence.problems and (resumed or not same):
                again.append((contact_id, sequence.id))
        for contact_id, sequence_id in again:
            self._advance(self.enrollments[contact_id][sequence_id], out)

    def _specs_under(self, document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        """Take the document's account, if any; the sequence definitions to build under it.

        The sequences the document leaves alone run under a new account too (its quiet
        hours, lines, users): they are rebuilt, and defined again, as their status may
        change with it."""
        specs: list[Mapping[str, Any]] = list(document.get("sequences") or ())
        if document.get("account") is None:
            return specs
        account = build_account(document["account"])
        if account == self.account:
            return specs
        self.account = account
        named = {str(spec["id"]) for spec in specs}
        return [s.definition for s in self.sequences.values() if s.id not in named] + specs

    def _definition_payload(self, sequence: Sequence) -> dict[str, Any]:
        created = sequence.created or self.now
        return {
            "sequence_id": sequence.id,
            "name": sequence.name,
            "description": sequence.description,
            "created": format_time(created) if created else None,
            "steps_count": len(sequence.steps),
            "step_ids": [step.id for step in sequence.steps],
            "process_on": sequence.process_on,
            "line": sequence.outbound_line,
            "status": sequence.status,
            "problems": list(sequence.problems),
            "triggers": [t.type for t in sequence.triggers],
            "intake_address": sequence.intake_address,
            "account_timezone": self.account.timezone,
            # The whole definition in force (defaults filled in, an `auto` intake address
            # set), so a read model can show the sequence's settings, steps and triggers.
            "definition": {**sequence.definition, "intake_address": sequence.intake_address}
            if sequence.intake_address
            else dict(sequence.definition),
        }

    def _reindex(self) -> None:
        self._triggers = TriggerIndex(self.sequences.values())

    # ---- inputs --------------------------------------------------------------------------

    def _contact(self, contact_id: str) -> ContactState:
        contact = self.contacts.get(contact_id)
        if contact is None:
            contact = ContactState(contact_id=contact_id)
            self.contacts[contact_id] = contact
        return contact

    def _process(self, event: CloudEvent, out: Outputs) -> None:
        handler = _HANDLERS.get(event.type)
        if handler is not None:
            handler(self, event.data, out)

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
        creation only adds: each of its tags counts, and what it leaves out of what was
        known before (a tag a step added meanwhile) was not removed."""
        for tag in sorted(after.tags if created else after.tags - before.tags):
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
        targets = self._targets(data)
        on = data.get(ON_PARTITION)
        if on is not None and self._partition_of is not None:
            # One partition's copy of a request a worker fanned out to every partition
            # (streams/routing.py): it stands for the contacts of that partition only.
            targets = [c for c in targets if self._partition_of(c) == on]
        for contact_id in targets:
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
        targets = self._targets(data)
        if on is not None and self._partition_of is not None:
            targets = [c for c in targets if self._partition_of(c) == on]
        for contact_id in targets:
            self._stop_in(sequence, contact_id, "manual", out)

    def _on_lead_email(self, data: Mapping[str, Any], out: Outputs) -> None:
        to = intake_address(str(data["to"]))
        now = self._clock()
        sender = data.get("from")
        sequence = self._triggers.intake(to)
        if sequence is None:
            out.add(LeadRejected(now, to, f"no sequence has the intake address {to}", sender))
            return
        lead = parse_lead_email(subject=data.get("subject"), body=str(data["body"]), sender=sender)
        if isinstance(lead, LeadProblem):
            out.add(LeadRejected(now, to, lead.reason, sender))
            return
        # The contact the lead already is, else a new one named by its address.
        known = self.addresses.lead_contact(lead.email, lead.phone, self._email_of)
        contact_id = known or contact_id_for_lead(
            to, lead, str(data.get("message_id") or out.cause)
        )
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
        profile = {"contact_id": contact_id, **{k: v for k, v in fields.items() if v is not None}}
        kind = "contact.updated" if exists else "contact.created"
        before = self._contact(contact_id)
        self.contacts[contact_id] = after = before.with_profile(profile)
        self.addresses.update(before, after)
        self._emit_change(
            kind, contact_id, {**profile, "sequence_id": sequence.id}, out, apply_now=False
        )
        self._bind_suppressions(after, sequence.id, out)
        self._enroll(sequence, contact_id, "intake", out)
        if not exists:
            # Other sequences' contact_created triggers see the new contact too; the intake
            # sequence itself has just enrolled it (once: its steps may already be done).
            self._run_triggers("contact_created", contact_id, None, out, skip=sequence.id)

    def _email_of(self, contact_id: str) -> str | None:
        contact = self.contacts.get(contact_id)
        return contact.email if contact else None

    def _bind_suppressions(self, lead: ContactState, sequence_id: str, out: Outputs) -> None:
        """A lead's number or address that another contact put on DNC or opted out stays
        so for the lead: said as the engine's own changes, applied before it is enrolled."""
        others = [self.contacts[c] for c in self.addresses.sharing(lead)]
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

    def _on_sequence_applied(self, data: Mapping[str, Any], out: Outputs) -> None:
        self._apply_definitions(data, self._clock(), out)

    def _on_sequence_delete(self, data: Mapping[str, Any], out: Outputs) -> None:
        sequence_id = str(data["sequence_id"])
        if sequence_id not in self.sequences:
            out.add(
                SequenceCommandRejected(
                    self._clock(), "sequence.delete_requested", sequence_id, "unknown_sequence"
                )
            )
            return
        self._delete(sequence_id, out, announce=True)
        self._reindex()

    def _delete(self, sequence_id: str, out: Outputs, *, announce: bool) -> None:
        if sequence_id not in self.sequences:
            return
        now = self._clock()
        for contact_id in sorted(self.members.get(sequence_id, set())):
            enrollment = self.enrollments[contact_id][sequence_id]
            self._record(enrollment, decide_stop(enrollment, now, "sequence_deleted"), out)
        del self.sequences[sequence_id]
        self.members.pop(sequence_id, None)
        if announce:
            out.add(SequenceDeleted(now, sequence_id))

    def _on_sequence_copy(self, data: Mapping[str, Any], out: Outputs) -> None:
        source_id, new_id = str(data["sequence_id"]), str(data["new_id"])
        source = self.sequences.get(source_id)
        if source is None or new_id in self.sequences:
            reason = "unknown_sequence" if source is None else "id_taken"
            command = "sequence.copy_requested"
            out.add(SequenceCommandRejected(self._clock(), command, source_id, reason, new_id))
            return
        copy = replace(source.copied(new_id, data.get("new_name")), created=self._clock())
        self.sequences[new_id] = copy
        out.add(SequenceDefined(self._clock(), self._definition_payload(copy)))
        self._reindex()

    # ---- enrollment ----------------------------------------------------------------------

    def _clock(self) -> datetime:
        assert self._at is not None, "the engine has no time yet"
        return self._at

    def _targets(self, data: Mapping[str, Any]) -> list[str]:
        """The contacts an enrollment request names, in a stable order without repeats."""
        targets = targets_of(data)
        chosen = dict.fromkeys(targets.contact_ids)
        for tag, line in targets.selectors:
            chosen.update(dict.fromkeys(self._matching(tag, line)))
        return list(chosen)

    def _matching(self, tag: str | None, line: str | None) -> list[str]:
        if tag is not None:
            return sorted(c.contact_id for c in self.contacts.values() if tag in c.tags)
        return sorted(c.contact_id for c in self.contacts.values() if c.line_id == line)

    def _run_triggers(
        self,
        kind: str,
        contact_id: str,
        value: str | None,
        out: Outputs,
        *,
        skip: str | None = None,
    ) -> None:
        for sequence, trigger in self._triggers.listening(kind, value):
            if sequence.id == skip:
                continue
            if trigger.action == "disenroll":
                self._stop_in(sequence, contact_id, "trigger", out)
            else:
                self._enroll(sequence, contact_id, kind, out)

    def _run_call_duration(self, contact_id: str, data: Mapping[str, Any], out: Outputs) -> None:
        for sequence, trigger in self._triggers.of_type("call_duration"):
            measured = data.get(trigger.metric or "duration")
            if (
                measured is not None
                and trigger.seconds is not None
                and float(measured) >= trigger.seconds
            ):
                self._stop_in(sequence, contact_id, "call_duration", out)

    def _rejection(self, sequence: Sequence, contact: ContactState, now: datetime) -> str | None:
        if sequence.problems:
            return "sequence_invalid"
        if sequence.id in self.enrollments.get(contact.contact_id, {}):
            return "already_enrolled"
        if (sequence.id, contact.contact_id) in self._enrolled_by_cause:
            return "already_enrolled"
        if sequence.remove_on_opt_out and contact.opted_out:
            return "opted_out"
        if sequence.prevent_enrollment_if_communicated and contact.communicated:
            return "communicated"
        if sequence.enroll_only_within_hours and not within_open_hours(
            now, self._zone(sequence, contact), sequence.calendar
        ):
            return "outside_hours"
        return None

    def _rejected(
        self, sequence_id: str, contact: ContactState, reason: str, via: str
    ) -> EnrollmentRejected:
        return EnrollmentRejected(
            self._clock(),
            sequence_id,
            contact.contact_id,
            reason,
            via,
            contact_name=contact.name or None,
            contact_phone=contact.phone,
            contact_email=contact.email,
        )

    def _enroll(self, sequence: Sequence, contact_id: str, via: str, out: Outputs) -> None:
        now = self._clock()
        contact = self._contact(contact_id)
        reason = self._rejection(sequence, contact, now)
        if reason is not None:
            out.add(self._rejected(sequence.id, contact, reason, via))
            return
        self._enrolled_by_cause.add((sequence.id, contact_id))
        counts = self.enrollment_counts.setdefault(sequence.id, {})
        number = counts.get(contact_id, 0) + 1
        counts[contact_id] = number
        enrolled = ContactEnrolled(
            now,
            sequence.id,
            contact_id,
            enrollment_id(sequence.id, contact_id, number),
            via=via,
            steps_total=len(sequence.steps),
            contact_name=contact.name or None,
            contact_phone=contact.phone,
            contact_email=contact.email,
        )
        out.add(enrolled)
        state = evolve(None, enrolled)
        assert state is not None
        self.enrollments.setdefault(contact_id, {})[sequence.id] = state
        self.members.setdefault(sequence.id, set()).add(contact_id)
        self._advance(state, out)

    def _stop_in(self, sequence: Sequence, contact_id: str, reason: str, out: Outputs) -> None:
        enrollment = self.enrollments.get(contact_id, {}).get(sequence.id)
        if enrollment is not None:
            self._record(enrollment, decide_stop(enrollment, self._clock(), reason), out)

    def _stop_where(
        self, contact_id: str, reason: str, out: Outputs, applies: Callable[[Sequence], bool]
    ) -> None:
        for sequence_id, enrollment in sorted(self.enrollments.get(contact_id, {}).items()):
            sequence = self.sequences.get(sequence_id)
            if sequence is not None and applies(sequence):
                self._record(enrollment, decide_stop(enrollment, self._clock(), reason), out)

    def _zone(self, sequence: Sequence, contact: ContactState) -> Any:
        return contact_zone(
            contact.timezone, contact.phone, sequence.schedule_timezone, self.account.timezone
        )

    def _place_of(self, enrollment: Enrollment) -> tuple[Sequence, ContactState, Any, datetime]:
        """What a decision about one enrollment reads: its sequence, its contact, the
        contact's zone and the moment."""
        sequence = self.sequences[enrollment.sequence_id]
        contact = self.contacts[enrollment.contact_id]
        return sequence, contact, self._zone(sequence, contact), self._clock()

    def _advance(self, enrollment: Enrollment, out: Outputs) -> None:
        sequence, contact, zone, now = self._place_of(enrollment)
        if sequence.problems:
            # An invalid sequence "cannot run" (CONTRACT.md §2): the edit that broke it held
            # its enrollments (_reschedule_changed_steps), and they wait for one to mend it.
            return
        context = StepContext(
            account=self.account,
            sequence=sequence,
            contact=contact,
            round_robin=self._round_robin,
            owner_assigned=self._owner_assigned,
            zone=zone,
        )
        decisions, state = decide_advance(
            enrollment, sequence, contact, zone, now, self.throttle, context.perform
        )
        self._record(enrollment, decisions, out, state)
        if self.throttle.displaced:
            self._move_displaced(out)

    def _move_displaced(self, out: Outputs) -> None:
        """Move on the steps whose place in their minute went to a step due earlier; each
        move may displace one due later still."""
        displaced = self.throttle.displaced
        while displaced:
            holder, sequence_id = displaced.pop(0)
            enrollment = self.enrollments.get(contact_of(holder, sequence_id), {}).get(sequence_id)
            if enrollment is None or enrollment.enrollment_id != holder:
                continue
            decisions, state = decide_displaced(
                enrollment, *self._place_of(enrollment), self.throttle
            )
            self._record(enrollment, decisions, out, state)

    def _record(
        self,
        enrollment: Enrollment,
        decisions: list[Decision],
        out: Outputs,
        folded: Enrollment | None = None,
    ) -> None:
        """Fold the decisions into the enrollment (unless the decider already did:
        `folded`), publish them, and keep the timer in step."""
        state: Enrollment | None = enrollment
        for decision in decisions:
            out.add(decision)
            if folded is None:
                state = evolve(state, decision)
            if isinstance(decision, EffectRequested) and decision.type.startswith("contact."):
                self._pending.append(self._as_input(decision, out))
        state = folded or state
        assert state is not None
        contact_id, sequence_id = state.contact_id, state.sequence_id
        if state.active:
            self.enrollments[contact_id][sequence_id] = state
            if state.due_at is None:
                self._paused.append((contact_id, sequence_id))
            elif decisions:
                self.timers.schedule_step(
                    state.due_at, contact_id, sequence_id, state.enrollment_id
                )
        else:
            # A step that was to run gives its place in the throttle's minute back.
            self.throttle.release(state.enrollment_id)
            active = self.enrollments.get(contact_id, {})
            if (
                active.get(sequence_id) is not None
                and active[sequence_id].enrollment_id == state.enrollment_id
            ):
                del active[sequence_id]
                if not active:
                    self.enrollments.pop(contact_id, None)
                self.members.get(sequence_id, set()).discard(contact_id)
            self.timers.cancel(state.enrollment_id)

    def _fire_step(self, timer: Timer, out: Outputs) -> None:
        contact_id, sequence_id = timer.key
        enrollment = self.enrollments.get(contact_id, {}).get(sequence_id)
        if enrollment is None or not self.timers.is_current(timer, enrollment.enrollment_id):
            return  # cancelled or superseded: a stale entry in the heap
        self.timers_fired += 1
        # The id names the enrollment, step and due moment, so it is the same in any runner.
        cause = f"t:{enrollment.enrollment_id}:{enrollment.next_step}:{format_time(timer.due)}"
        timer_out = Outputs(cause)
        self._enrolled_by_cause.clear()
        self._advance(enrollment, timer_out)
        self._drain(timer_out)
        out.events.extend(timer_out.events)

    # ---- engine-made changes -------------------------------------------------------------

    def _emit_change(
        self, kind: str, contact_id: str, payload: dict[str, Any], out: Outputs, *, apply_now: bool
    ) -> None:
        change = EffectRequested(self._clock(), kind, contact_id, payload)
        out.add(change)
        if apply_now:
            self._process(self._as_input(change, out), out)

    def _as_input(self, change: EffectRequested, out: Outputs) -> CloudEvent:
        return CloudEvent(
            id=f"{out.cause}/in{len(out.events)}",
            source=ENGINE_SOURCE,
            type=change.type,
            time=change.at,
            subject=change.contact_id,
            data=change.payload,
        )

    def _round_robin(self, sequence_id: str, step_id: str, owners: tuple[str, ...]) -> str:
        key = (sequence_id, step_id)
        cursor = self.round_robin_cursor.get(key, 0)
        self.round_robin_cursor[key] = cursor + 1
        return owners[cursor % len(owners)]

    def _owner_assigned(
        self,
        sequence_id: str,
        owner_id: str,
        contact_id: str,
        step_id: str,
        effect_id: str,
        at: datetime,
    ) -> None:
        window = window_of(sequence_id, owner_id, at)
        enrollment = self.enrollments.get(contact_id, {}).get(sequence_id)
        assignment = Assignment(
            contact_id,
            enrollment.enrollment_id if enrollment else "",
            step_id,
            effect_id,
            at,
            describe(self.contacts.get(contact_id) or ContactState(contact_id=contact_id)),
        )
        if self.owner_notices.assign(window, assignment):
            minute = window[2]
            self.timers.schedule_notices(
                minute + timedelta(minutes=1), (sequence_id, owner_id, format_time(minute))
            )

    def _flush_owner_notices(self, timer: Timer, into: Outputs) -> None:
        """Tell owners of their new contacts: one SMS each, or one summary for a crowd."""
        sequence_id, owner_id, minute_text = timer.key
        # Numbered per contact: a partition whose clock lags can add to a minute already
        # sent, and its notices must not take the ids of the first ones.
        out = Outputs(f"t:notify:{sequence_id}:{owner_id}:{minute_text}", per_subject=True)
        sequence = self.sequences.get(sequence_id)
        notices = self.owner_notices.close(
            (sequence_id, owner_id, datetime.fromisoformat(minute_text)),
            timer.due,
            account=self.account,
            line=sequence.outbound_line if sequence else None,
        )
        for notice in notices:
            out.add(notice)
        into.events.extend(out.events)


_Handler = Any
_HANDLERS: dict[str, _Handler] = {
    "contact.created": Engine._on_contact_created,
    "contact.updated": Engine._on_contact_updated,
    "contact.tag_added": Engine._on_tag_added,
    "contact.tag_removed": Engine._on_tag_removed,
    "contact.disposition_changed": Engine._on_disposition_changed,
    "contact.dnc_changed": Engine._on_dnc_changed,
    "contact.opted_out": Engine._on_opted_out,
    "contact.opted_in": Engine._on_opted_in,
    "call.completed": Engine._on_call_completed,
    "message.received": Engine._on_message_received,
    "appointment.changed": Engine._on_appointment_changed,
    "lead.email_received": Engine._on_lead_email,
    "enrollment.requested": Engine._on_enrollment_requested,
    "enrollment.removal_requested": Engine._on_removal_requested,
    "sequence.applied": Engine._on_sequence_applied,
    "sequence.delete_requested": Engine._on_sequence_delete,
    "sequence.copy_requested": Engine._on_sequence_copy,
}
