"""Records a worker passes on instead of deciding: requests and leads that belong to other
partitions, and dead letters."""

from __future__ import annotations

from collections.abc import Callable

from aggregates.intake import LeadProblem, contact_id_for_lead, intake_address, parse_lead_email
from aggregates.targets import targets_of
from schemas.dead_letters import RejectedRecord
from schemas.envelope import CloudEvent
from schemas.registry import DLQ_TOPIC
from streams.ordering import Pending
from streams.store import OutboxRow

ContactsMatching = Callable[[str | None, str | None], list[str]]


def needs_fan_out(event: CloudEvent) -> bool:
    """An enrollment request is decided where it lands only when it names exactly the one
    contact it is keyed by; anything else is split per contact first."""
    data = event.data
    ids = [str(c) for c in data.get("contact_ids") or ()]
    selectors = bool(data.get("tag") or data.get("line_id") or data.get("contact_group"))
    return selectors or len(ids) != 1 or event.subject != ids[0]


def fan_out(event: CloudEvent, contacts_matching: ContactsMatching) -> list[OutboxRow]:
    """One request per contact, keyed by that contact, back onto `commands`."""
    data = event.data
    targets = targets_of(data)
    chosen = dict.fromkeys(targets.contact_ids)
    for tag, line in targets.selectors:
        chosen.update(dict.fromkeys(contacts_matching(tag, line)))
    rows = []
    for contact_id in chosen:
        request = CloudEvent(
            id=f"{event.id}/{contact_id}",
            source=event.source,
            type=event.type,
            time=event.time,
            subject=contact_id,
            data={"sequence_id": data["sequence_id"], "contact_ids": [contact_id]},
        )
        row_id = f"fan:{event.identity}/{contact_id}"
        rows.append(OutboxRow(row_id, "commands", contact_id, request.encode()))
    return rows


def lead_destination(event: CloudEvent) -> str | None:
    """The contact a lead e-mail will create, so it can be decided in that contact's
    partition; None when the lead is refused (it is decided where it landed)."""
    data = event.data
    lead = parse_lead_email(
        subject=data.get("subject"), body=str(data["body"]), sender=data.get("from")
    )
    if isinstance(lead, LeadProblem):
        return None
    return contact_id_for_lead(
        intake_address(str(data["to"])), lead, str(data.get("message_id") or event.identity)
    )


def rerouted_lead(event: CloudEvent, contact_id: str) -> OutboxRow:
    routed = CloudEvent(
        id=event.id,
        source=event.source,
        type=event.type,
        time=event.time,
        subject=contact_id,
        data=event.data,
    )
    return OutboxRow(f"route:{event.identity}", "intake", contact_id, routed.encode())


def dead_letter(item: Pending) -> OutboxRow:
    """The rejected record as its `dlq` letter (schemas/dead_letters.py), to the outbox."""
    field, reason = item.rejection or ("event", "rejected")
    rejected = RejectedRecord(
        item.topic, item.partition, item.offset, item.key, item.raw, field, reason
    )
    return OutboxRow(rejected.letter_id, DLQ_TOPIC, rejected.text_key, rejected.letter())
