"""Every field the engine and the effect processors write is one their published schema
declares: every data schema allows unknown fields, so an undeclared one fails nothing, but
subscribers reading the schemas the README points them to never learn it exists.

The outputs come from a replay of every worked scenario, a few small histories below that
make the engine emit what the scenarios do not, and outcome events built directly.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson

from effects import outcomes
from schemas import checking
from schemas.definitions import DefinitionRejected, load_definition_file
from schemas.envelope import CloudEvent, parse_time
from streams.embedded import replay
from tests.engine.helpers import ACCOUNT, decide, definitions, event, sequence
from tests.scenarios.harness import HERE as SCENARIOS
from tests.scenarios.harness import until_of

T0 = "2027-07-06T14:00:00Z"
# Each hand-built history runs until here: its steps have run and its owner notices gone.
END = "2027-07-06T15:00:00Z"
# u-8 has no phone: owner notices to them go by e-mail (notify.email, with a subject).
HAND_ACCOUNT: dict[str, Any] = {
    **ACCOUNT,
    "users": {**ACCOUNT["users"], "u-8": {"name": "Kim Park", "email": "kim@example.com"}},
    "ring_groups": {"rg-sales": ["u-7", "u-8"]},
}
CONTACT = {"first_name": "Jo", "phone": "+12125550199", "email": "jo@example.com"}


def _as_json(events: list[CloudEvent]) -> list[dict[str, Any]]:
    return [orjson.loads(e.encode()) for e in events]


def _scenario_outputs() -> Iterator[dict[str, Any]]:
    """The outputs of every scenario folder that has both files and a file that loads."""
    for folder in sorted(p for p in SCENARIOS.iterdir() if p.is_dir()):
        sequences, events = folder / "sequences.yaml", folder / "events.jsonl"
        if not (sequences.is_file() and events.is_file()):
            continue
        try:
            document = load_definition_file(sequences)
        except DefinitionRejected:
            continue  # the invalid_file_* scenarios: refused whole, nothing decided
        until = until_of(folder.name)
        out: list[CloudEvent] = []
        with events.open("rb") as lines:
            replay(
                document, lines, out.extend, lambda _: None, parse_time(until) if until else None
            )
        yield from _as_json(out)


def _run(steps: list[dict[str, Any]], contacts: int = 1, **settings: Any) -> list[dict[str, Any]]:
    """One sequence of `steps` (no delay), `contacts` contacts created and tagged into it."""
    seq = sequence(steps=[{"delay": {"kind": "none"}, **s} for s in steps], **settings)
    inputs = []
    for n in range(1, contacts + 1):
        inputs.append(event("contact.created", T0, contact_id=f"c-{n}", **CONTACT))
        inputs.append(event("contact.tag_added", T0, contact_id=f"c-{n}", tag="hot"))
    return decide(definitions(seq, account=HAND_ACCOUNT), inputs, until=END).events


def _hand_built_outputs() -> Iterator[dict[str, Any]]:
    yield from _run(
        [
            {"id": "hook", "type": "send_webhook", "url": "https://hooks.example.com/[Phone]"},
            {"id": "mms", "type": "send_mms", "text": "Hi", "media_url": "https://m.example/a.png"},
            {"id": "vm", "type": "ringless_voicemail", "recording_url": "https://r.example/a.mp3"},
            {
                "id": "dial",
                "type": "preview_dialer",
                "ring_group": "rg-sales",
                "message": "Press 1",
                "repeat_message": True,
            },
            {"id": "ntxt", "type": "sms_ring_group", "ring_group": "rg-sales", "text": "New lead"},
            {
                "id": "nmail",
                "type": "email_ring_group",
                "ring_group": "rg-sales",
                "subject": "New lead",
                "body": "Call them",
            },
            {"id": "pd", "type": "power_dialer", "user_id": "u-7"},
            {"id": "unpd", "type": "remove_from_power_dialer", "user_id": "u-7"},
            {"id": "tag", "type": "add_tag", "tag": "called"},
            {"id": "untag", "type": "remove_tag", "tag": "called"},
            {"id": "disp", "type": "change_disposition", "disposition": "interested"},
            {"id": "line", "type": "add_line", "line_id": "line-1"},
            {"id": "source", "type": "change_lead_source", "lead_source": "fair"},
            {"id": "dnc", "type": "mark_dnc"},
        ]
    )
    # Owner notices: one per contact by text, and a summary past 20 assignments by e-mail.
    yield from _run([{"id": "own", "type": "change_owner", "owner_id": "u-7"}], contacts=2)
    yield from _run([{"id": "own", "type": "change_owner", "owner_id": "u-8"}], contacts=21)
    # Lead intake: a new contact whose number another contact put on DNC and opted out of
    # SMS (so is the lead), and a lead for an address no sequence has. Then STOP and START
    # by text, and a delete of a sequence that does not exist.
    intake = sequence(id="leads", intake_address="leads@intake.example.com", triggers=[])
    lead = "First Name: Lu\nLast Name: Chan\nPhone: (212) 555-0198\nEmail: lu@example.com\n"
    to, other = "leads@intake.example.com", "other@intake.example.com"
    texted = {"contact_id": "c-9", "channel": "sms"}
    yield from decide(
        definitions(intake, account=HAND_ACCOUNT),
        [
            event("contact.created", T0, contact_id="c-9", phone="+12125550198", email="c9@x.com"),
            event("contact.dnc_changed", T0, contact_id="c-9", dnc=True),
            event("contact.opted_out", T0, **texted),
            event("lead.email_received", T0, "intake", to=to, body=lead, **{"from": "f@x.com"}),
            event("lead.email_received", T0, "intake", to=other, body=lead),
            event("message.received", T0, message_id="m-1", body="START", **texted),
            event("message.received", T0, message_id="m-2", body="STOP", **texted),
            event("sequence.delete_requested", T0, "sequences", sequence_id="gone"),
        ],
        until=END,
    ).events


def _outcome_outputs() -> Iterator[dict[str, Any]]:
    at = datetime(2027, 7, 6, 14, 0, tzinfo=UTC)
    fx = "fx:e-1:s1:1"
    context = {
        "effect_type": "call.dial",
        "sequence_id": "seq",
        "contact_id": "c-1",
        "enrollment_id": "e-1",
        "step_id": "s1",
    }
    yield from _as_json(
        [
            outcomes.effect_sent(fx, context, "twilio", "CA1", at, "u-8: no phone number"),
            outcomes.effect_failed(fx, context, "busy", "31005", at),
            outcomes.effect_unknown(fx, context, "timed out", at),
            outcomes.effect_status_changed(
                fx, context, "twilio", "CA1", "completed", at, callback_key="CA1"
            ),
            outcomes.dialer_key_pressed(
                fx, context, call_sid="CA1", digit="9", action="opt_out", mode="preview", at=at
            ),
            outcomes.call_completed(fx, context, call_sid="CA1", answered=True, duration=45, at=at),
            outcomes.contact_opted_out(fx, context, "all", "pressed 9", at),
            outcomes.contact_put_on_dnc(fx, context, "pressed 9", at),
        ]
    )


def _undeclared(value: Any, schema: dict[str, Any], path: str) -> Iterator[str]:
    """The dotted paths of the keys of `value` its schema does not name in `properties`,
    looking into nested objects (and arrays of them) the schema describes by properties."""
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            yield from _undeclared(item, schema["items"], f"{path}[]")
        return
    if not isinstance(value, dict) or "properties" not in schema:
        return
    properties: dict[str, Any] = schema["properties"]
    for key, inner in value.items():
        where = f"{path}.{key}" if path else key
        if key not in properties:
            yield where
        else:
            yield from _undeclared(inner, properties[key], where)


def test_every_field_written_is_declared_in_its_schema() -> None:
    outputs = [*_scenario_outputs(), *_hand_built_outputs(), *_outcome_outputs()]
    types = {e["type"] for e in outputs}
    # The histories above still reach what they were written for.
    assert {
        "webhook.post",
        "mms.send",
        "voicemail.drop",
        "call.dial",
        "notify.sms",
        "notify.email",
        "power_dialer.added",
        "power_dialer.removed",
        "contact.dnc_changed",
        "contact.created",
        "lead.rejected",
        "effect.sent",
        "dialer.key_pressed",
        "sequence.command_rejected",
    } <= types
    assert any(len(e["data"].get("contact_ids", ())) == 21 for e in outputs), "no summary"
    assert any(e["data"].get("mode") == "preview" for e in outputs if e["type"] == "call.dial")
    bound = [e for e in outputs if e["type"] == "contact.opted_out" and "sequence_id" in e["data"]]
    assert bound, "no opt-out carried over to a lead"

    misses: set[tuple[str, str]] = set()
    for output in outputs:
        version = output.get("dataversion", "1")
        schema = checking.schema_document(f"events/{output['type']}.v{version}.schema.json")
        misses.update(
            (f"{output['type']} v{version}", f) for f in _undeclared(output["data"], schema, "")
        )
    listing = "\n".join(f"  {kind}: {field}" for kind, field in sorted(misses))
    assert not misses, f"fields written but not declared in the data schema:\n{listing}"
