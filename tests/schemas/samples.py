"""A valid `data` for every event type, and the one helper the schema tests build events with."""

from __future__ import annotations

from typing import Any

import orjson

ENROLLMENT = {"sequence_id": "welcome", "contact_id": "c-1", "enrollment_id": "welcome:c-1:1"}
EFFECT = {**ENROLLMENT, "step_id": "s1", "effect_id": "fx:welcome:c-1:1:s1:1"}

DEFINITION: dict[str, Any] = {
    "account": {
        "timezone": "America/New_York",
        "opt_out_phrase": "Reply STOP to opt out.",
        "quiet_hours": {"start": "08:00", "end": "21:00"},
        "lines": {"line-1": "+12125550000"},
        "users": {"u-7": {"name": "Sam Lee", "phone": "+12125550007", "email": "sam@example.com"}},
        "ring_groups": {"rg-sales": ["u-7"]},
    },
    "sequences": [
        {
            "id": "welcome",
            "name": "Welcome new leads",
            "process_on": "business_days",
            "run_on_holidays": False,
            "prevent_enrollment_if_communicated": False,
            "throttle_per_minute": 60,
            "remove_on_response": True,
            "remove_on_manual_call": True,
            "remove_on_opt_out": True,
            "steps": [
                {"id": "s1", "type": "send_sms", "delay": {"kind": "none"}, "text": "Hi!"},
            ],
            "triggers": [{"type": "contact_tagged", "tags": ["hot"], "action": "enroll"}],
        }
    ],
}

SAMPLES: dict[str, dict[str, Any]] = {
    # inputs
    "contact.created": {
        "contact_id": "c-1",
        "first_name": "Maya",
        "last_name": "Ortiz",
        "phone": "+17205550142",
        "email": "maya@example.com",
        "timezone": "America/Denver",
        "state": "CO",
        "lead_source": "web",
        "owner_id": "u-7",
        "line_id": "line-1",
        "tags": ["web-lead"],
        "tracking_number": "+17205550100",
    },
    "contact.updated": {"contact_id": "c-1", "timezone": "Europe/Paris", "owner_id": None},
    "contact.tag_added": {"contact_id": "c-1", "tag": "hot"},
    "contact.tag_removed": {"contact_id": "c-1", "tag": "hot"},
    "contact.disposition_changed": {"contact_id": "c-1", "disposition": "interested"},
    "contact.dnc_changed": {"contact_id": "c-1", "dnc": True},
    "contact.opted_out": {"contact_id": "c-1", "channel": "sms"},
    "contact.opted_in": {"contact_id": "c-1", "channel": "all"},
    "call.completed": {
        "call_id": "k-1",
        "contact_id": "c-1",
        "direction": "outbound",
        "answered": True,
        "disposition": "interested",
        "talk_time": 75,
        "wait_time": 3.5,
        "duration": 80,
        "user_id": "u-7",
        "manual": True,
    },
    "message.received": {"message_id": "m-1", "contact_id": "c-1", "channel": "sms", "body": "hi"},
    "appointment.changed": {"appointment_id": "a-1", "contact_id": "c-1", "status": "scheduled"},
    "lead.email_received": {
        "to": "leads-7f3kq@intake.example.com",
        "from": "forms@example.com",
        "subject": "New lead",
        "body": "Name: Maya Ortiz\nPhone: +17205550142",
    },
    "enrollment.requested": {
        "sequence_id": "welcome",
        "contact_group": ["c-1", {"tag": "hot"}, {"line_id": "line-1"}, {"contact_id": "c-2"}],
    },
    "enrollment.removal_requested": {"sequence_id": "welcome", "contact_ids": ["c-1"]},
    # commands
    "sequence.applied": DEFINITION,
    "sequence.delete_requested": {"sequence_id": "welcome"},
    "sequence.copy_requested": {"sequence_id": "welcome", "new_id": "welcome-2", "new_name": "W2"},
    # decisions
    "enrollment.enrolled": {
        **ENROLLMENT,
        "via": "contact_tagged",
        "steps_total": 3,
        "contact_name": "Maya Ortiz",
        "contact_phone": "+17205550142",
        "contact_email": "maya@example.com",
    },
    "enrollment.rejected": {**ENROLLMENT, "reason": "already_enrolled"},
    "enrollment.disenrolled": {**ENROLLMENT, "reason": "responded"},
    "enrollment.completed": ENROLLMENT,
    "step.scheduled": {**ENROLLMENT, "step_id": "s1", "due_at": "2027-07-02T20:30:00Z"},
    "step.deferred": {
        **ENROLLMENT,
        "step_id": "s1",
        "from": "2027-07-02T22:30:00Z",
        "to": "2027-07-03T12:00:00Z",
        "reason": "quiet_hours",
    },
    "step.executed": {**ENROLLMENT, "step_id": "s1", "effect_id": "fx:welcome:c-1:1:s1:1"},
    "step.skipped": {**ENROLLMENT, "step_id": "s1", "reason": "dnc"},
    "sequence.defined": {
        "sequence_id": "welcome",
        "name": "Welcome new leads",
        "description": None,
        "created": "2027-07-01T00:00:00Z",
        "steps_count": 1,
        "process_on": "business_days",
        "line": "line-1",
        "status": "invalid",
        "problems": ["steps[0].text: unknown shortcode [Nickname]"],
        "triggers": ["contact_tagged"],
        "intake_address": None,
    },
    "sequence.deleted": {"sequence_id": "welcome"},
    "sequence.command_rejected": {
        "command": "sequence.copy_requested",
        "sequence_id": "welcome",
        "reason": "id_taken",
        "new_id": "nurture",
    },
    "lead.rejected": {"to": "leads-7f3kq@intake.example.com", "reason": "no phone or e-mail"},
    # effect commands
    "sms.send": {**EFFECT, "to": "+17205550142", "from_line": "line-1", "body": "Hi! Reply STOP"},
    "mms.send": {
        **EFFECT,
        "to": "+17205550142",
        "from_line": "line-1",
        "body": "Reply STOP",
        "media_url": "https://example.com/card.png",
    },
    "email.send": {**EFFECT, "to": "maya@example.com", "subject": "Hello", "body": "..."},
    "call.dial": {
        **EFFECT,
        "to": "+17205550142",
        "mode": "progressive",
        "ring_group": "rg-sales",
        "message": "press 1",
    },
    "voicemail.drop": {
        **EFFECT,
        "to": "+17205550142",
        "recording_url": "https://example.com/vm.mp3",
    },
    "webhook.post": {**EFFECT, "url": "https://example.com/hook", "payload": {"contact_id": "c-1"}},
    "notify.sms": {**EFFECT, "to": "rg-sales", "body": "Maya replied"},
    "notify.email": {**EFFECT, "to": ["u-7"], "subject": "Lead", "body": "Maya replied"},
    "power_dialer.added": {**ENROLLMENT, "step_id": "s4", "user_id": "u-7"},
    "power_dialer.removed": {**ENROLLMENT, "step_id": "s5", "all_users": True},
    # stream control
    "stream.watermark": {"producer": "dripstream produce"},
    # outcomes
    "effect.sent": {
        "effect_id": "fx:welcome:c-1:1:s1:1",
        "provider": "twilio",
        "provider_id": "SM1",
    },
    "effect.failed": {
        "effect_id": "fx:welcome:c-1:1:s1:1",
        "reason": "invalid number",
        "code": 21211,
    },
    "effect.unknown": {"effect_id": "fx:welcome:c-1:1:s1:1", "reason": "timeout"},
    "effect.status_changed": {
        "effect_id": "fx:welcome:c-1:1:s1:1",
        "provider_id": "SM1",
        "status": "delivered",
    },
    "dialer.key_pressed": {
        "effect_id": "fx:welcome:c-1:2:s3:1",
        "contact_id": "c-1",
        "digit": "9",
        "action": "opt_out",
    },
}


def raw_event(event_type: str, data: Any = None, **envelope: Any) -> bytes:
    """The JSON bytes of an event of `event_type`: the sample data unless `data` is given.

    Envelope attributes can be replaced by keyword; a value of None removes that attribute.
    """
    body: dict[str, Any] = {
        "specversion": "1.0",
        "id": "e-1",
        "source": "crm",
        "type": event_type,
        "time": "2027-07-02T20:30:00Z",
        "subject": "c-1",
        "data": SAMPLES[event_type] if data is None else data,
    }
    body.update(envelope)
    return orjson.dumps({key: value for key, value in body.items() if value is not None})
