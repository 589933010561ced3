"""A contact as the engine sees it, folded from upstream facts and the engine's own changes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from operator import attrgetter
from sys import intern
from typing import Any

from schemas.immutable import immutable

PROFILE_FIELDS = (
    "first_name",
    "last_name",
    "phone",
    "email",
    "timezone",
    "state",
    "lead_source",
    "owner_id",
    "line_id",
    "tracking_number",
)

# Values that many contacts share: one string object each rather than one per contact
# (the engine keeps every contact it has seen, so this is most of its memory).
SHARED_FIELDS = ("timezone", "state", "lead_source", "owner_id", "line_id")


@immutable
class ContactState:
    contact_id: str
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    email: str | None = None
    timezone: str | None = None
    state: str | None = None
    lead_source: str | None = None
    owner_id: str | None = None
    line_id: str | None = None
    tracking_number: str | None = None
    tags: frozenset[str] = frozenset()
    disposition: str | None = None
    dnc: bool = False
    opted_out: frozenset[str] = frozenset()  # channels: "sms", "email"
    communicated: bool = False
    created: bool = False  # a contact.created was seen: creation triggers fire only once

    @property
    def name(self) -> str:
        return " ".join(part for part in (self.first_name, self.last_name) if part)

    def is_opted_out(self, channel: str) -> bool:
        return channel in self.opted_out

    def with_profile(self, data: Mapping[str, Any], *, created: bool = False) -> ContactState:
        """Apply the profile fields present in `data` (contact.created / contact.updated);
        `created` marks the contact as created (by its first contact.created)."""
        changes: dict[str, Any] = {k: data[k] for k in PROFILE_FIELDS if k in data}
        if created:
            changes["created"] = True
        for name in ("email", "phone"):
            # A blank address or number is none (a form's empty field): outputs that carry
            # the contact's say null, not "".
            value = changes.get(name)
            if type(value) is str and not value.strip():
                changes[name] = None
        for name in SHARED_FIELDS:
            value = changes.get(name)
            if type(value) is str:
                changes[name] = intern(value)
        # A creation only adds (engine_facts.FactRules._run_profile_triggers): a tag or a
        # DNC the engine knew before it (told ahead of the CRM's creation) stays.
        if "tags" in data and data["tags"] is not None:
            tags = frozenset(intern(str(t)) for t in data["tags"])
            changes["tags"] = self.tags | tags if created else tags
        if "dnc" in data and data["dnc"] is not None:
            changes["dnc"] = bool(data["dnc"]) or (created and self.dnc)
        if "disposition" in data:
            changes["disposition"] = data["disposition"]
        return self.changed(changes) if changes else self

    def with_tag(self, tag: str, present: bool) -> ContactState:
        tags = self.tags | {intern(tag)} if present else self.tags - {tag}
        return self if tags == self.tags else self.changed({"tags": tags})

    def with_opt_out(self, channel: str, opted_out: bool) -> ContactState:
        channels = {"sms", "email"} if channel == "all" else {channel}
        updated = self.opted_out | channels if opted_out else self.opted_out - channels
        return self.changed({"opted_out": frozenset(updated)})

    def changed(self, changes: Mapping[str, Any]) -> ContactState:
        """A copy with `changes` applied. `dataclasses.replace` does the same but inspects
        the class's fields on every call, and contacts change on most inputs."""
        values = dict(zip(_FIELD_NAMES, _FIELD_VALUES(self), strict=True))
        values.update(changes)
        return ContactState(**values)

    def template_values(self, agent_name: str | None) -> dict[str, str | None]:
        return {
            "FirstName": self.first_name,
            "LastName": self.last_name,
            "Phone": self.phone,
            "Email": self.email,
            "State": self.state,
            "TrackingNumber": self.tracking_number,
            "AgentName": agent_name,
        }


_FIELD_NAMES = tuple(f.name for f in fields(ContactState))
# Every field's value in one call (a third of the cost of a getattr per field).
_FIELD_VALUES = attrgetter(*_FIELD_NAMES)
