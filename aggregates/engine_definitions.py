"""The rules for sequence definitions: applying, redefining (active enrollments go on by step
id), copying and deleting sequences."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from aggregates.decisions import (
    SequenceCommandRejected,
    SequenceDefined,
    SequenceDeleted,
    StepSkipped,
)
from aggregates.engine_core import EngineCore
from aggregates.enrollment import decide_stop, first_not_passed
from aggregates.outputs import Outputs
from aggregates.sequence import Sequence, Step, build_account, build_sequence
from schemas.envelope import format_time


def _timing(step: Step | None) -> tuple[str, str, Any] | None:
    """What decides when a step runs, and which step it is. A delay counts by what it
    waits, not how it is written: 2 hours is 120 minutes, and a default of 0 is none."""
    if step is None:
        return None
    delay = step.delay
    if delay.kind == "time_of_day":
        return step.id, step.type, (delay.kind, delay.days, delay.at)
    return step.id, step.type, ("after", delay.seconds() if delay.kind == "default" else 0)


def _index_of(steps: tuple[Step, ...], step_id: str, otherwise: int) -> int:
    return next((n for n, step in enumerate(steps) if step.id == step_id), otherwise)


def _rules_of_time(sequence: Sequence) -> tuple[Any, ...]:
    """What moves a step's due moment besides its delay (CONTRACT.md §3 (a)-(d)): the
    calendar (open hours, processing days, holidays, the account's quiet hours), the
    schedule's zone (a contact's, failing its own) and the throttle."""
    return (sequence.calendar, sequence.schedule_timezone, sequence.throttle_per_minute)


class DefinitionRules(EngineCore):
    """Sequences added, replaced, copied and deleted, and what that does to enrollments."""

    def _apply_definitions(self, document: Mapping[str, Any], at: datetime, out: Outputs) -> None:
        self._upsert(document, at, out, announce=True)
        self._reindex()

    def _upsert(
        self, document: Mapping[str, Any], at: datetime, out: Outputs, *, announce: bool
    ) -> None:
        """Put the document's definitions in force (`announce`: with a `sequence.defined`
        each; another worker's recorded ones go without), their enrollments re-planned."""
        zone_before = self.account.timezone
        specs = self._specs_under(document)
        # The account's zone is a contact's last resort (CONTRACT.md §3), so a new one moves
        # the steps of the sequences whose schedule names no zone of its own.
        account_zone_moved = self.account.timezone != zone_before
        for spec in specs:
            sequence = build_sequence(spec, self.account)
            previous = self.sequences.get(sequence.id)
            created = sequence.created or (previous.created if previous else None) or at
            sequence = replace(sequence, created=created)
            self.sequences[sequence.id] = sequence
            if announce:
                out.add(SequenceDefined(at, self._definition_payload(sequence)))
            zone_moved = account_zone_moved and sequence.schedule_timezone is None
            self._reschedule_changed_steps(previous, sequence, out, zone_moved=zone_moved)

    def _reschedule_changed_steps(
        self, previous: Sequence | None, sequence: Sequence, out: Outputs, *, zone_moved: bool
    ) -> None:
        """After a redefinition an active enrollment goes on by step id: with the first step
        of the new steps it has not passed (each step runs once, wherever an edit moved it).
        When that is not the step it was waiting for (another id, type or delay), it is
        scheduled again, its delay counted as ever from the step passed last; or it
        completes. A step whose text alone changed keeps its moment (the text is read when
        it runs). An edit that makes the sequence invalid holds its enrollments (no timer,
        no throttle place); one that puts it right lets them go on. An edit of when steps
        may run (the schedule, processing days, holidays, quiet hours, the throttle; the
        account's zone, `zone_moved`, where the schedule names none) schedules every
        waiting step again from its own due moment under the new rules: a
        step held for hours that now stand open, or for a minute a raised throttle now has
        room in, runs then; a lowered throttle moves steps that held places beyond it."""
        if previous is None:
            return
        broken = sequence.problems and not previous.problems
        resumed = previous.problems and not sequence.problems
        retimed = zone_moved or _rules_of_time(previous) != _rules_of_time(sequence)
        if previous.steps == sequence.steps and not (broken or resumed or retimed):
            return
        # Every member's place first, its old timer and throttle place dropped when its step
        # is to be scheduled again: scheduling one may displace another from its minute,
        # and that one must be read at its new place, or be held no place at all.
        again: list[tuple[str, str]] = []
        kept = {step.id for step in sequence.steps}
        for contact_id in sorted(self.members.get(sequence.id, ())):
            enrollment = self.enrollments[contact_id][sequence.id]
            old = enrollment.next_step
            before = previous.steps[old] if old < len(previous.steps) else None
            if before is not None and before.id not in kept:
                # The step it was scheduled for is gone: said, so that every step.scheduled
                # ends in an executed or skipped one. Not folded: a step it never ran is no
                # step passed, and the next one's delay counts from the last it did run.
                out.add(
                    StepSkipped(
                        self._clock(),
                        sequence.id,
                        contact_id,
                        enrollment.enrollment_id,
                        step_id=before.id,
                        reason="removed",
                    )
                )
            index = first_not_passed(sequence.steps, enrollment.passed)
            now = sequence.steps[index] if index < len(sequence.steps) else None
            held = enrollment.due_at is None  # held while the sequence was invalid
            same = not held and not retimed and _timing(before) == _timing(now)
            unscheduled = not held and (broken or not same)
            if unscheduled:
                self.throttle.release(enrollment.enrollment_id)
                self.timers.cancel(enrollment.enrollment_id)
            place = index
            if sequence.problems and before is not None:
                # Held, it still waits for the step it was told of, wherever this edit put
                # it: the edit that takes that step out later says so (step.skipped).
                place = _index_of(sequence.steps, before.id, index)
            if place != old or unscheduled:
                moment = None if unscheduled else enrollment.due_at
                enrollment = replace(enrollment, next_step=place, due_at=moment)
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
