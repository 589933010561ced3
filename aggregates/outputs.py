"""One cause's decisions as CloudEvents: what the engine returns for an input or a timer.

Output ids derive from the cause (`<cause>/<n>`), so a replay and a worker number the
outputs of the same input alike, and a repeat of the input names the same outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aggregates.decisions import (
    Decision,
    LeadRejected,
    SequenceCommandRejected,
    SequenceDefined,
    SequenceDeleted,
)
from schemas.envelope import ENGINE_SOURCE, CloudEvent
from schemas.registry import EVENT_TYPES


@dataclass(slots=True)
class Outputs:
    """Collects one cause's decisions as CloudEvents with ids `<cause>/<n>`."""

    cause: str
    events: list[CloudEvent] = field(default_factory=list)
    # Numbered per subject, for causes that several workers answer each for its own
    # contacts (a deletion recorded by another worker): their ids must not collide.
    per_subject: bool = False
    _counts: dict[str, int] = field(default_factory=dict)

    def add(self, decision: Decision) -> None:
        subject = _subject(decision)
        if self.per_subject:
            n = self._counts.get(subject, 0)
            self._counts[subject] = n + 1
            event_id = f"{self.cause}/{subject}/{n}"
        else:
            event_id = f"{self.cause}/{len(self.events)}"
        self.events.append(
            CloudEvent(
                id=event_id,
                source=ENGINE_SOURCE,
                type=decision.TYPE,
                time=decision.at,
                subject=subject,
                data=decision.data(),
                dataversion=_LATER_VERSIONS.get(decision.TYPE, 1),
            )
        )


# The types whose data is past version 1 (contact.opted_out): the engine writes the current
# version, as every encoder must (schemas/README.md), and these are few, so a miss is cheap.
_LATER_VERSIONS = {kind: info.version for kind, info in EVENT_TYPES.items() if info.version > 1}


def _subject(decision: Decision) -> str:
    """The contact a decision is about; a sequence or an intake address for the few about
    no one contact (they are keyed, and partitioned, by it on Kafka)."""
    match decision:
        case SequenceDefined():
            return f"sequence:{decision.payload['sequence_id']}"
        case SequenceDeleted() | SequenceCommandRejected():
            return f"sequence:{decision.sequence_id}"
        case LeadRejected():
            return f"intake:{decision.to}"
        case _:
            return decision.contact_id
