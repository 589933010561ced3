"""What the engine decides: facts in the past tense, one frozen dataclass per output type
(`immutable`: frozen to the type checker, cheap to build at run time).

Each decision knows its CloudEvent type and its `data`; `at` is the decision's event time
and becomes the CloudEvent `time`. The enrollment aggregate folds these with `evolve`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

from schemas.envelope import format_time
from schemas.immutable import immutable


@immutable
class EnrollmentDecision:
    TYPE: ClassVar[str]
    at: datetime
    sequence_id: str
    contact_id: str
    enrollment_id: str

    def data(self) -> dict[str, Any]:
        return {
            "sequence_id": self.sequence_id,
            "contact_id": self.contact_id,
            "enrollment_id": self.enrollment_id,
        }


@immutable
class ContactEnrolled(EnrollmentDecision):
    TYPE: ClassVar[str] = "enrollment.enrolled"
    via: str
    steps_total: int
    contact_name: str | None
    contact_phone: str | None
    contact_email: str | None

    def data(self) -> dict[str, Any]:
        return {
            **EnrollmentDecision.data(self),
            "via": self.via,
            "steps_total": self.steps_total,
            "contact_name": self.contact_name,
            "contact_phone": self.contact_phone,
            "contact_email": self.contact_email,
        }


@immutable
class EnrollmentRejected:
    TYPE: ClassVar[str] = "enrollment.rejected"
    at: datetime
    sequence_id: str
    contact_id: str
    reason: str
    via: str
    # Who, as with enrollment.enrolled: a contact only ever rejected is still named and
    # found by phone in a history built from the output alone.
    contact_name: str | None = None
    contact_phone: str | None = None
    contact_email: str | None = None

    def data(self) -> dict[str, Any]:
        return {
            "sequence_id": self.sequence_id,
            "contact_id": self.contact_id,
            "reason": self.reason,
            "via": self.via,
            "contact_name": self.contact_name,
            "contact_phone": self.contact_phone,
            "contact_email": self.contact_email,
        }


@immutable
class ContactDisenrolled(EnrollmentDecision):
    TYPE: ClassVar[str] = "enrollment.disenrolled"
    reason: str

    def data(self) -> dict[str, Any]:
        return {**EnrollmentDecision.data(self), "reason": self.reason}


@immutable
class EnrollmentCompleted(EnrollmentDecision):
    TYPE: ClassVar[str] = "enrollment.completed"


@immutable
class StepScheduled(EnrollmentDecision):
    TYPE: ClassVar[str] = "step.scheduled"
    step_id: str
    due_at: datetime

    def data(self) -> dict[str, Any]:
        return {
            **EnrollmentDecision.data(self),
            "step_id": self.step_id,
            "due_at": format_time(self.due_at),
        }


@immutable
class StepDeferred(EnrollmentDecision):
    TYPE: ClassVar[str] = "step.deferred"
    step_id: str
    moved_from: datetime
    moved_to: datetime
    reason: str

    def data(self) -> dict[str, Any]:
        return {
            **EnrollmentDecision.data(self),
            "step_id": self.step_id,
            "from": format_time(self.moved_from),
            "to": format_time(self.moved_to),
            "reason": self.reason,
        }


@immutable
class StepExecuted(EnrollmentDecision):
    TYPE: ClassVar[str] = "step.executed"
    step_id: str
    effect_id: str

    def data(self) -> dict[str, Any]:
        return {
            **EnrollmentDecision.data(self),
            "step_id": self.step_id,
            "effect_id": self.effect_id,
        }


@immutable
class StepSkipped(EnrollmentDecision):
    TYPE: ClassVar[str] = "step.skipped"
    step_id: str
    reason: str

    def data(self) -> dict[str, Any]:
        return {**EnrollmentDecision.data(self), "step_id": self.step_id, "reason": self.reason}


@immutable
class EffectRequested:
    """An effect command (sms.send, email.send, call.dial, …) or an engine-made contact change.

    `type` varies per instance, so it is a field here rather than a class constant.
    """

    at: datetime
    type: str
    contact_id: str
    payload: Mapping[str, Any]

    @property
    def TYPE(self) -> str:  # noqa: N802 - same reading as the other decisions' class constant
        return self.type

    def data(self) -> dict[str, Any]:
        return dict(self.payload)


@immutable
class SequenceDefined:
    TYPE: ClassVar[str] = "sequence.defined"
    at: datetime
    payload: Mapping[str, Any]

    def data(self) -> dict[str, Any]:
        return dict(self.payload)


@immutable
class SequenceDeleted:
    TYPE: ClassVar[str] = "sequence.deleted"
    at: datetime
    sequence_id: str

    def data(self) -> dict[str, Any]:
        return {"sequence_id": self.sequence_id}


@immutable
class SequenceCommandRejected:
    """A delete or copy request that could not be carried out: said, not dropped."""

    TYPE: ClassVar[str] = "sequence.command_rejected"
    at: datetime
    command: str
    sequence_id: str
    reason: str  # unknown_sequence | id_taken
    new_id: str | None = None

    def data(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "command": self.command,
            "sequence_id": self.sequence_id,
            "reason": self.reason,
        }
        if self.new_id is not None:
            data["new_id"] = self.new_id
        return data


@immutable
class LeadRejected:
    TYPE: ClassVar[str] = "lead.rejected"
    at: datetime
    to: str
    reason: str
    sender: str | None
    # The sequence whose intake address `to` is, when one has it: the History report files
    # the row under it without looking the address up (the definition may reach a live
    # projector after the rejection, or another sequence may take the address later).
    sequence_id: str | None = None

    def data(self) -> dict[str, Any]:
        data = {"to": self.to, "reason": self.reason, "from": self.sender}
        if self.sequence_id is not None:
            data["sequence_id"] = self.sequence_id
        return data


Decision = (
    ContactEnrolled
    | EnrollmentRejected
    | ContactDisenrolled
    | EnrollmentCompleted
    | StepScheduled
    | StepDeferred
    | StepExecuted
    | StepSkipped
    | EffectRequested
    | SequenceDefined
    | SequenceDeleted
    | SequenceCommandRejected
    | LeadRejected
)
