"""The engine: folds input facts and due timers into decisions, deterministically.

It owns the contacts' states, the active enrollments, the timer queue and the per-sequence
counters (throttle, round robin, owner notices). It is pure: the clock is the event time
handed in, ids derive from the input that caused them, and nothing is sent or stored here.
Runners (streams/) feed it events in order and persist or publish what it returns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, ClassVar

from aggregates.duplicates import ReusedIdentityError
from aggregates.engine_core import Rule
from aggregates.engine_definitions import DefinitionRules
from aggregates.engine_facts import FactRules
from aggregates.outputs import Outputs
from aggregates.targets import input_identity
from aggregates.timer_queue import Partitions
from schemas.envelope import CloudEvent, format_time, occurrence_of

DEFINITION_COMMANDS = frozenset(
    {"sequence.applied", "sequence.delete_requested", "sequence.copy_requested"}
)


class Engine(FactRules, DefinitionRules):
    """The engine the runners drive: each input, definition or moment in, its decisions out
    as CloudEvents. Built as `EngineCore` is (`partition_of`, `live`)."""

    _rules: ClassVar[Mapping[str, Rule]] = {
        "contact.created": FactRules._on_contact_created,
        "contact.updated": FactRules._on_contact_updated,
        "contact.tag_added": FactRules._on_tag_added,
        "contact.tag_removed": FactRules._on_tag_removed,
        "contact.disposition_changed": FactRules._on_disposition_changed,
        "contact.dnc_changed": FactRules._on_dnc_changed,
        "contact.opted_out": FactRules._on_opted_out,
        "contact.opted_in": FactRules._on_opted_in,
        "call.completed": FactRules._on_call_completed,
        "message.received": FactRules._on_message_received,
        "appointment.changed": FactRules._on_appointment_changed,
        "lead.email_received": FactRules._on_lead_email,
        "enrollment.requested": FactRules._on_enrollment_requested,
        "enrollment.removal_requested": FactRules._on_removal_requested,
        "sequence.applied": DefinitionRules._on_sequence_applied,
        "sequence.delete_requested": DefinitionRules._on_sequence_delete,
        "sequence.copy_requested": DefinitionRules._on_sequence_copy,
    }

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
        self._upsert(document, at, out, announce=False)
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
        self, event: CloudEvent, at: datetime | None = None, partition: Partitions = None
    ) -> list[CloudEvent]:
        """Decide on one input at `at` (default: the event's own time). Timers due strictly
        before it fire first: those of `partition` (aggregates/timer_queue.py), or all of
        them when it is None.

        A repeat of an input decided within the last day is skipped (counted in
        `duplicates`); another event under its source and id raises `ReusedIdentityError`
        before anything is decided."""
        moment = at or event.time
        identity, fingerprint = input_identity(event), event.fingerprint()
        earlier = self._recent.earlier(identity, moment)
        if earlier is not None and earlier != fingerprint:
            # Before anything moves: the caller dead-letters it and nothing was decided.
            raise ReusedIdentityError(event.id, event.source)
        out = Outputs(occurrence_of(identity, event.time))
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
        self._recent.remember(input_identity(event), at or event.time, event.fingerprint())

    def fire_before(self, moment: datetime) -> list[CloudEvent]:
        """Fire every timer due strictly before `moment`. `handle` leaves the clock alone for
        a definition command (a live one carries today's time); in a history, where its
        time is the history's, the timers before it come first (CONTRACT.md §3)."""
        out = Outputs("timers")
        self._fire_until(moment, out, inclusive=False)
        self._tick(moment)
        return out.events

    def advance(
        self,
        until: datetime,
        partition: Partitions = None,
        *,
        spill: Callable[[list[CloudEvent]], None] | None = None,
    ) -> list[CloudEvent]:
        """Fire every timer due up to and including `until` (of `partition`, or all). With
        `spill`, the outputs go to it a part at a time, and only the last part comes back."""
        out = Outputs("timers")
        self._fire_until(until, out, inclusive=True, partition=partition, spill=spill)
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

    def next_due(self, partition: Partitions = None) -> datetime | None:
        return self.timers.next_due(partition)

    def timers_due(self, moment: datetime, partition: Partitions = None) -> int:
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
