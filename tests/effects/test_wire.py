"""Every event effects/ emits decodes with the project's validator (schemas.validation)."""

from __future__ import annotations

import pytest

from effects import outcomes
from effects.commands import decode_command
from schemas.envelope import CloudEvent
from schemas.validation import decode_event
from tests.effects.helpers import T0, command, sms

FX = "fx:welcome:c-1:1:s1:1"
CONTEXT = {
    "effect_type": "sms.send",
    "sequence_id": "welcome",
    "contact_id": "c-1",
    "enrollment_id": "welcome:c-1:1",
    "step_id": "s1",
}

EMITTED = [
    outcomes.effect_sent(FX, CONTEXT, "twilio", "SM1", T0),
    outcomes.effect_failed(FX, CONTEXT, "invalid 'To' phone number", "21211", T0),
    outcomes.effect_unknown(FX, CONTEXT, "read timeout", T0),
    outcomes.effect_status_changed(
        FX, CONTEXT, "twilio", "SM1", "delivered", T0, callback_key="SM1"
    ),
    outcomes.effect_status_changed(FX, {}, "twilio", "SM1", "sent", T0, callback_key="SM1"),
    outcomes.dialer_key_pressed(
        FX, CONTEXT, call_sid="CA1", digit="9", action="opt_out", mode="progressive", at=T0
    ),
    outcomes.contact_opted_out(FX, CONTEXT, "sms", "carrier 21610", T0),
    outcomes.contact_opted_out(FX, CONTEXT, "all", "pressed 9", T0),
]


@pytest.mark.parametrize("event", EMITTED, ids=lambda e: e.id)
def test_each_outcome_passes_the_projects_validation(event: CloudEvent) -> None:
    decoded = decode_event(event.encode())
    assert decoded.type == event.type
    assert decoded.data["effect_id" if "effect" in event.type else "contact_id"]
    assert decoded.subject == event.subject


def test_commands_as_the_engine_writes_them_decode_here_too() -> None:
    for event in [
        sms(),
        command("call.dial", to="+12125550101", mode="preview", message=None),
        command("power_dialer.removed", user_id=None, all_users=True),
    ]:
        raw = decode_event(event.encode()).data
        assert dict(decode_command(event.encode()).data) == dict(raw)
