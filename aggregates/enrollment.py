"""The enrollment aggregate: one contact's progress through one sequence.

A decider: `decide_*` functions return decisions, `evolve` folds them into the next state.
Scheduling follows CONTRACT.md §3: step 1's delay counts from enrollment, step k's from the
moment step k-1 was done; a due moment is moved by the calendar and the throttle until it
holds still, and a step that will run holds its place in the throttle's minute.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial
from typing import Protocol
from zoneinfo import ZoneInfo

from aggregates.calendar import adjust_due, time_of_day_due
from aggregates.contact import ContactState
from aggregates.decisions import (
    ContactDisenrolled,
    ContactEnrolled,
    Decision,
    EffectRequested,
    EnrollmentCompleted,
    StepDeferred,
    StepExecuted,
    StepScheduled,
    StepSkipped,
)
from aggregates.sequence import VOICE_OR_TEXT, Sequence, Step
from aggregates.timezones import in_us_or_canada
from schemas.immutable import immutable


@immutable
class Enrollment:
    enrollment_id: str
    sequence_id: str
    contact_id: str
    number: int
    next_step: int = 0
    due_at: datetime | None = None
    anchor: datetime | None = None
    active: bool = True
    # The ids of the steps passed so far (carried out or skipped). An enrollment goes on by
    # step id: after a redefinition it takes the first step it has not passed, and passes
    # over the ones it has wherever they now stand, so each step runs once.
    passed: tuple[str, ...] = ()

    @property
    def is_terminal(self) -> bool:
        return not self.active


def evolve(state: Enrollment | None, decision: Decision) -> Enrollment | None:
    # The new states are built field by field: dataclasses.replace inspects the fields on
    # every call, and this runs for every decision of a replay.
    match decision:
        case ContactEnrolled():
            number = int(decision.enrollment_id.rsplit(":", 1)[1])
            return Enrollment(
                decision.enrollment_id,
                decision.sequence_id,
                decision.contact_id,
                number,
                0,
                None,
                decision.at,
                True,
                (),
            )
    if state is None:
        raise TypeError(f"{type(decision).__name__} before the enrollment exists")
    match decision:
        case StepScheduled():
            return _moved(state, decision.due_at)
        case StepDeferred():
            return _moved(state, decision.moved_to)
        case StepExecuted() | StepSkipped():
            return Enrollment(
                state.enrollment_id,
                state.sequence_id,
                state.contact_id,
                state.number,
                state.next_step + 1,
                None,
                decision.at,
                state.active,
                (*state.passed, decision.step_id),
            )
        case ContactDisenrolled() | EnrollmentCompleted():
            return Enrollment(
                state.enrollment_id,
                state.sequence_id,
                state.contact_id,
                state.number,
                state.next_step,
                None,
                state.anchor,
                False,
                (),  # an ended enrollment passes no step again
            )
        case EffectRequested():
            # Effect commands and contact changes ride along with a step; they change nothing here.
            return state
        case _:
            # Drift fails loudly: a decision of another aggregate has no place in this fold.
            raise TypeError(f"an enrollment does not fold {type(decision).__name__}")


def first_not_passed(steps: tuple[Step, ...], passed: tuple[str, ...]) -> int:
    """Where an enrollment that has passed these step ids goes on in `steps`."""
    return next((i for i, step in enumerate(steps) if step.id not in passed), len(steps))


def _moved(state: Enrollment, due_at: datetime) -> Enrollment:
    return Enrollment(
        state.enrollment_id,
        state.sequence_id,
        state.contact_id,
        state.number,
        state.next_step,
        due_at,
        state.anchor,
        state.active,
        state.passed,
    )


class Slots(Protocol):
    """The throttle's places, as the decider uses them (aggregates/throttle.py)."""

    def hold(
        self,
        holder: str,
        sequence_id: str,
        due: datetime,
        limit: int | None,
        *,
        rank: datetime | None = None,
        movable: bool = False,
    ) -> datetime: ...

    def take(self, holder: str, moment: datetime) -> bool: ...

    def count_unthrottled(self, sequence_id: str, moment: datetime) -> None: ...

    def release(self, holder: str) -> None: ...


Perform = Callable[[Step, Enrollment, datetime], list[Decision]]


def raw_due(step: Step, anchor: datetime, zone: ZoneInfo) -> datetime:
    delay = step.delay
    if delay.kind == "default":
        return anchor + timedelta(seconds=delay.seconds())
    if delay.kind == "time_of_day" and delay.at is not None:
        return time_of_day_due(anchor, delay.days, delay.at, zone)
    return anchor


class _Placing:
    """What settling one step's due moment needs (CONTRACT.md §3 (a)-(d))."""

    __slots__ = ("calendar", "contact", "holder", "sequence", "slots", "step")

    def __init__(
        self,
        sequence: Sequence,
        step: Step,
        contact: ContactState,
        zone: ZoneInfo,
        slots: Slots,
        holder: str,
    ) -> None:
        self.sequence, self.step, self.contact = sequence, step, contact
        self.slots, self.holder = slots, holder
        # Rules (a)-(c) for this step: bound once, called for every candidate moment.
        self.calendar = partial(
            adjust_due,
            zone=zone,
            cal=sequence.calendar,
            contact_facing_voice_or_text=step.type in VOICE_OR_TEXT,
        )

    def settle(self, due: datetime, reason: str | None) -> tuple[datetime, str | None]:
        """Rules (a)-(c) from `due`, then (d), again until the moment holds still, keeping
        the first reason; a step that is going to run holds its place in that minute."""
        moment, moved = self.calendar(due)
        reason = reason or moved
        limit, sequence_id = self.sequence.throttle_per_minute, self.sequence.id
        if limit is None or skip_reason(self.step, self.contact) is not None:
            return moment, reason
        rank = moment  # its due moment, by which it goes before or after the others
        while True:
            granted = self.slots.hold(
                self.holder, sequence_id, moment, limit, rank=rank, movable=reason is None
            )
            if granted == moment:
                return moment, reason
            # Its minute is full: the first with room may lie outside the calendar.
            reason = reason or "throttle"
            moment, _ = self.calendar(granted)
            if moment == granted:
                return moment, reason

    def when_due(self, now: datetime, settled: bool) -> tuple[datetime, str | None, str | None]:
        """At its due moment: where it moves to and why, or why it is skipped (None, None:
        it runs now). The contact may have moved zones since it was settled: check again,
        unless it was settled for this very moment (same zone, same answer)."""
        if not settled:
            moved_to, moved = self.calendar(now)
            if moved is not None:
                self.slots.release(self.holder)
                return (*self.settle(moved_to, moved), None)
        skip = skip_reason(self.step, self.contact)
        if skip is not None:
            self.slots.release(self.holder)
            return now, None, skip
        if self.sequence.throttle_per_minute is None:
            self.slots.count_unthrottled(self.sequence.id, now)
            return now, None, None
        if self.slots.take(self.holder, now):
            return now, None, None
        # No place held in this minute (the step was to be skipped when it was settled,
        # or a live clock fired it late): it needs one now.
        moved_to, reason = self.settle(now, None)
        if reason is None:
            self.slots.take(self.holder, now)
        return moved_to, reason, None


def decide_advance(
    state: Enrollment,
    sequence: Sequence,
    contact: ContactState,
    zone: ZoneInfo,
    now: datetime,
    slots: Slots,
    perform: Perform,
) -> tuple[list[Decision], Enrollment]:
    """Run the enrollment as far as it can go at `now`: schedule, defer, execute, complete.

    Returns the decisions and the state they leave, so the runner need not fold them a
    second time (this runs for every step of every enrollment)."""
    decisions: list[Decision] = []
    current: Enrollment | None = state

    def emit(decision: Decision) -> None:
        nonlocal current
        decisions.append(decision)
        current = evolve(current, decision)

    ids = (state.sequence_id, state.contact_id, state.enrollment_id)
    while current is not None and current.active:
        if current.next_step >= len(sequence.steps):
            emit(EnrollmentCompleted(now, *ids))
            break
        step = sequence.steps[current.next_step]
        if step.id in current.passed:
            # Passed before a redefinition moved it here: not run again. Only after an
            # edit, so `replace` (slower than the constructors above) costs nothing here.
            current = replace(current, next_step=current.next_step + 1)
            continue
        placing = _Placing(sequence, step, contact, zone, slots, state.enrollment_id)
        settled = False  # whether `now` itself was just settled for this step
        if current.due_at is None:
            due = raw_due(step, current.anchor or now, zone)
            emit(StepScheduled(now, *ids, step_id=step.id, due_at=due))
            moved_to, reason = placing.settle(due, None)
            if reason is not None:
                emit(
                    StepDeferred(
                        now, *ids, step_id=step.id, moved_from=due, moved_to=moved_to, reason=reason
                    )
                )
            settled = moved_to == now
        due_at = current.due_at
        assert due_at is not None
        if due_at > now:
            break
        moved_to, reason, skip = placing.when_due(now, settled)
        if reason is not None:
            emit(
                StepDeferred(
                    now, *ids, step_id=step.id, moved_from=now, moved_to=moved_to, reason=reason
                )
            )
            break
        if skip is not None:
            emit(StepSkipped(now, *ids, step_id=step.id, reason=skip))
            continue
        performed = perform(step, current, now)
        for decision in performed:
            emit(decision)
        if any(isinstance(d, EffectRequested) and d.type.startswith("contact.") for d in performed):
            # Pause: the change must reach the contact's state before the next step decides.
            break
    assert current is not None
    return decisions, current


def decide_displaced(
    state: Enrollment,
    sequence: Sequence,
    contact: ContactState,
    zone: ZoneInfo,
    now: datetime,
    slots: Slots,
) -> tuple[list[Decision], Enrollment]:
    """The step whose place in its minute went to a step due earlier (CONTRACT.md §3: the
    rest move to the following minutes in due-time order): it moves on to the next minute
    with room, its one step.deferred. One that is to be skipped now stays where it is."""
    due = state.due_at
    if due is None or state.next_step >= len(sequence.steps):
        return [], state
    step = sequence.steps[state.next_step]
    if skip_reason(step, contact) is not None:
        return [], state
    placing = _Placing(sequence, step, contact, zone, slots, state.enrollment_id)
    moved_to, _ = placing.settle(due, "throttle")
    deferred = StepDeferred(
        now,
        state.sequence_id,
        state.contact_id,
        state.enrollment_id,
        step_id=step.id,
        moved_from=due,
        moved_to=moved_to,
        reason="throttle",
    )
    return [deferred], _moved(state, moved_to)


def skip_reason(step: Step, contact: ContactState) -> str | None:
    """Why a contact-facing step is not carried out for this contact (CONTRACT.md §2)."""
    kind = step.type
    if kind == "remove_from_power_dialer":
        return None if _dialer_user_known(step, contact) else "missing_owner"
    if kind not in VOICE_OR_TEXT and kind != "email_contact":
        return None
    if contact.dnc:
        return "dnc"
    if kind in ("send_sms", "send_mms") and contact.is_opted_out("sms"):
        return "opted_out"
    if kind == "email_contact":
        if contact.is_opted_out("email"):
            return "opted_out"
        return None if contact.email else "missing_email"
    if not contact.phone:
        return "missing_phone"
    if kind == "ringless_voicemail" and not in_us_or_canada(contact.phone):
        # The seed: ringless voicemail reaches contacts "in the US and Canada" only.
        return "outside_us_canada"
    if kind == "power_dialer" and not _dialer_user_known(step, contact):
        return "missing_owner"
    return None


def _dialer_user_known(step: Step, contact: ContactState) -> bool:
    """Whether a power dialer step knows whose list it means: the user it names, else the
    contact's owner (a removal from every user's list needs neither). Without one the
    effect could only fail, so the step is skipped rather than reported done."""
    if step.type == "remove_from_power_dialer" and step.get("all_users", not step.get("user_id")):
        return True
    return bool(step.get("user_id") or contact.owner_id)


def decide_stop(state: Enrollment, now: datetime, reason: str) -> list[Decision]:
    if not state.active:
        return []
    return [
        ContactDisenrolled(
            now, state.sequence_id, state.contact_id, state.enrollment_id, reason=reason
        )
    ]
