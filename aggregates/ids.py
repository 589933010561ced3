"""Typed identifiers and the pure functions that derive the engine's stable ids."""

from __future__ import annotations

from typing import NewType

ContactId = NewType("ContactId", str)
SequenceId = NewType("SequenceId", str)
StepId = NewType("StepId", str)
EnrollmentId = NewType("EnrollmentId", str)
EffectId = NewType("EffectId", str)


def enrollment_id(sequence_id: str, contact_id: str, number: int) -> EnrollmentId:
    """The n-th enrollment of a contact in a sequence (1-based): re-enrollment gets a new id."""
    return EnrollmentId(f"{sequence_id}:{contact_id}:{number}")


def contact_of(enrollment: str, sequence_id: str) -> ContactId:
    """The contact of an enrollment id of `sequence_id` (the inverse of `enrollment_id`:
    a sequence id has no ':', a contact id may)."""
    return ContactId(enrollment[len(sequence_id) + 1 : enrollment.rindex(":")])


def effect_id(
    sequence_id: str, contact_id: str, number: int, step_id: str, attempt: int = 1
) -> EffectId:
    """Stable: the same enrollment, step and attempt always give the same id."""
    return EffectId(f"fx:{sequence_id}:{contact_id}:{number}:{step_id}:{attempt}")
