"""The engine's state and the mechanics every rule uses: the clock, enrolling, advancing and
stopping enrollments, firing due steps, and the engine's own contact changes.

The rules live beside it, in `engine_facts` (upstream facts and requests) and
`engine_definitions` (sequence definitions, copies and deletions); `engine.Engine` puts them
together under the surface the runners call.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar

from aggregates.addresses import AddressBook
from aggregates.calendar import within_open_hours
from aggregates.contact import ContactState
from aggregates.decisions import ContactEnrolled, Decision, EffectRequested, EnrollmentRejected
from aggregates.duplicates import RecentIdentities
from aggregates.enrollment import Enrollment, decide_advance, decide_displaced, decide_stop, evolve
from aggregates.ids import contact_of, enrollment_id
from aggregates.outputs import Outputs
from aggregates.owner_notices import Assignment, OwnerNotices, describe, window_of
from aggregates.sequence import Account, Catalog, Sequence
from aggregates.steps import StepContext
from aggregates.throttle import MinuteThrottle
from aggregates.timer_queue import Partitions, Timer, TimerQueue
from aggregates.timezones import contact_zone
from aggregates.trigger_index import TriggerIndex
from schemas.envelope import ENGINE_SOURCE, CloudEvent, format_time

Rule = Callable[[Any, Mapping[str, Any], Outputs], None]

# How often the throttle drops its past minutes (made once: this is asked on every tick).
_FORGET_EVERY = timedelta(minutes=5)
# Outputs of timers handed over at a time by an advance that spills: a replay's --until
# years past its input fires years of timers, which need not all be held at once.
SPILL_EVERY = 4096


class EngineCore:
    """What every rule reads and changes. `partition_of` maps a contact to its input
    partition: timers then fire by each partition's own event time (a worker pushing history
    through several partitions must not fire one contact's timer past an input of that
    contact it has not read yet)."""

    # The rule for each input type; `Engine` names them (they live in its mixins).
    _rules: ClassVar[Mapping[str, Rule]] = {}

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
        self._pending_for: dict[str | None, int] = {}  # how many of them each contact has
        self._paused: deque[tuple[str, str]] = deque()
        # (sequence, contact) enrolled by the cause being decided (an input, a timer, a
        # definition): one cause enrolls a contact in a sequence once. Without it, two
        # sequences that tag the contact into each other with no delay would go round for
        # ever within one moment, each finished before the other's tag arrives.
        self._enrolled_by_cause: set[tuple[str, str]] = set()
        # The (sequence, contact) pairs an enroll trigger of the fact being processed has
        # tried already: a fact that matches two of a sequence's triggers (a contact created
        # with a tag the sequence also listens for) enrolls once, with no `already_enrolled`
        # against itself.
        self._tried_by_fact: set[tuple[str, str]] = set()
        self._recent = RecentIdentities()
        self.duplicates = 0  # inputs skipped as repeats of one decided before
        self.timers_fired = 0  # timers that came up and were live (steps, notice minutes)
        self._reindex()

    # ---- time ----------------------------------------------------------------------------

    def partition_clock(self, partition: int) -> datetime | None:
        """How far `partition`'s event clock has moved (its inputs and fired timers)."""
        return self._partition_clocks.get(partition)

    def expect_partitions(self, partitions: Iterable[int]) -> None:
        """The partitions whose event clocks this engine follows (worker --clock event):
        until each has moved, no throttle minute counts as past for all of them."""
        self._expected_partitions = frozenset(partitions)

    def _note_partition_clock(self, partition: Partitions, moment: datetime) -> None:
        if isinstance(partition, int):  # the event clock: each partition's own
            known = self._partition_clocks.get(partition)
            if known is None or moment > known:
                self._partition_clocks[partition] = moment

    def _tick(self, moment: datetime) -> None:
        if self.now is None or moment > self.now:
            self.now = moment
            if self._forgot_at is None or moment - self._forgot_at >= _FORGET_EVERY:
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
        self,
        limit: datetime,
        out: Outputs,
        *,
        inclusive: bool,
        partition: Partitions = None,
        spill: Callable[[list[CloudEvent]], None] | None = None,
    ) -> None:
        """Fire the timers due by `limit`, their outputs into `out`; with `spill`, handed
        over a part at a time as they come (each timer's outputs carry ids of their own)."""
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
            if spill is not None and len(out.events) >= SPILL_EVERY:
                spill(out.events[:])
                out.events.clear()

    def _notices_until(self, limit: datetime, partition: Partitions) -> datetime | None:
        """Up to when owner notices may be sent while `partition`'s timers fire: a minute's
        notices wait until every partition has left it, as a lagging one may still assign
        owners in it (they would go out in two or more parts, or 21 assignments as 21
        texts instead of one summary). None: not yet."""
        if not isinstance(partition, int):
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
                left = self._pending_for[change.subject] - 1
                if left:
                    self._pending_for[change.subject] = left
                else:
                    del self._pending_for[change.subject]
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
        rule = self._rules.get(event.type)
        if rule is not None:
            outer, self._tried_by_fact = self._tried_by_fact, set()
            try:
                rule(self, event.data, out)
            finally:
                self._tried_by_fact = outer

    # ---- enrollment ----------------------------------------------------------------------

    def _clock(self) -> datetime:
        assert self._at is not None, "the engine has no time yet"
        return self._at

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
                continue
            pair = (sequence.id, contact_id)
            if pair not in self._tried_by_fact:
                self._tried_by_fact.add(pair)
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
        if enrollment.due_at is None and self._changing(enrollment.contact_id):
            # Another sequence's step has just changed this contact (DNC, owner, …), and
            # the change is not in yet: wait for it, as that step's own enrollment does, so
            # no step of this moment reads the contact as it was before it.
            self._paused.append((enrollment.contact_id, enrollment.sequence_id))
            return
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

    def _changing(self, contact_id: str) -> bool:
        return contact_id in self._pending_for

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
                change = self._as_input(decision, out)
                self._pending.append(change)
                self._pending_for[change.subject] = self._pending_for.get(change.subject, 0) + 1
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
        window = (sequence_id, owner_id, datetime.fromisoformat(minute_text))
        sequence = self.sequences.get(sequence_id)
        notices = self.owner_notices.close(
            window,
            timer.due,
            account=self.account,
            line=sequence.outbound_line if sequence else None,
        )
        # A minute told again (a late input opened it once more) is numbered apart, and
        # each telling per contact: a partition whose clock lags can add to a minute already
        # sent, and its notices must not take the ids of the first ones.
        told = self.owner_notices.told(window)
        again = f"#{told}" if told > 1 else ""
        out = Outputs(f"t:notify:{sequence_id}:{owner_id}:{minute_text}{again}", per_subject=True)
        for notice in notices:
            out.add(notice)
        into.events.extend(out.events)
