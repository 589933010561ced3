"""Keys of a sequence file that nothing reads: a typo (`remove_on_respnse`) would otherwise
leave the setting at its default without a word. They are named, not refused: the contract
lets files carry more than it lists, and a newer file must still load.

A key some kinds of step, delay or trigger read is named too where this one does not read
it: `tags` on a `contact_created` trigger (every new contact would be enrolled, tagged or
not), an `amount` on a delay of kind `none` (the step runs at once).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import Any

from schemas.checking import schema_document


@functools.cache
def _known() -> dict[str, frozenset[str]]:
    """The keys json/sequences.schema.json describes, per kind of object."""
    schema = schema_document("sequences.schema.json")
    parts = schema["definitions"]

    def keys(node: Mapping[str, Any]) -> frozenset[str]:
        # A kind whose keys depend on its type lists them all in its first `allOf` part.
        return frozenset((node.get("properties") or node["allOf"][0]["properties"]).keys())

    account = parts["account"]
    return {
        "document": keys(schema),
        "account": keys(account),
        "quiet_hours": keys(account["properties"]["quiet_hours"]),
        "user": keys(parts["user"]),
        "sequence": keys(parts["sequence"]),
        "schedule": keys(parts["sequence"]["properties"]["schedule"]),
        "step": keys(parts["step"]),
        "delay": keys(parts["delay"]),
        "trigger": keys(parts["trigger"]),
    }


# What each kind reads besides `id`, `type` and `delay` (aggregates/steps.py, sequence.py).
STEP_SETTINGS: dict[str, frozenset[str]] = {
    kind: frozenset(keys)
    for kind, keys in {
        "progressive_dialer": {"ring_group", "message"},
        "preview_dialer": {"ring_group", "message", "repeat_message"},
        "power_dialer": {"user_id"},
        "send_sms": {"text"},
        "send_mms": {"text", "media_url"},
        "sms_ring_group": {"ring_group", "text"},
        "add_tag": {"tag"},
        "remove_tag": {"tag"},
        "change_disposition": {"disposition"},
        "mark_dnc": set(),
        "change_owner": {"owner_id"},
        "send_webhook": {"url"},
        "email_contact": {"subject", "body"},
        "email_ring_group": {"ring_group", "subject", "body"},
        "ringless_voicemail": {"recording_url"},
        "round_robin_owner": {"owners"},
        "add_line": {"line_id"},
        "change_lead_source": {"lead_source"},
        "remove_from_power_dialer": {"user_id", "all_users"},
    }.items()
}
DELAY_SETTINGS = {
    "none": frozenset(),
    "default": frozenset({"amount", "unit"}),
    "time_of_day": frozenset({"days", "at"}),
}
# Besides `type` and `action`.
TRIGGER_SETTINGS = {
    "contact_disposition": frozenset({"dispositions"}),
    "call_disposition": frozenset({"dispositions"}),
    "contact_created": frozenset(),
    "call_duration": frozenset({"metric", "seconds"}),
    "dnc_changed": frozenset({"on"}),
    "appointment": frozenset({"statuses"}),
    "contact_tagged": frozenset({"tags"}),
    "tag_removed": frozenset({"tags"}),
}


def unknown_keys(document: Mapping[str, Any]) -> list[str]:
    """One line per key the engine ignores, named by its place in the file."""
    return list(_walk(document))


def _walk(document: Mapping[str, Any]) -> Iterator[str]:
    yield from _extra(document, "document", "")
    account = document.get("account")
    if isinstance(account, Mapping):
        yield from _extra(account, "account", "account.")
        yield from _extra(account.get("quiet_hours"), "quiet_hours", "account.quiet_hours.")
        users = account.get("users")
        for user_id, user in users.items() if isinstance(users, Mapping) else ():
            yield from _extra(user, "user", f"account.users.{user_id}.")
    for sequence in document.get("sequences") or ():
        if not isinstance(sequence, Mapping):
            continue
        where = f"sequence {sequence.get('id')!s}: "
        yield from _extra(sequence, "sequence", where)
        if sequence.get("process_on") == "every_day" and sequence.get("run_on_holidays"):
            # CONTRACT.md §3: holidays are left out of business days only.
            yield f"{where}run_on_holidays: not read with process_on every_day, ignored"
        yield from _extra(sequence.get("schedule"), "schedule", f"{where}schedule.")
        for number, step in enumerate(sequence.get("steps") or ()):
            if isinstance(step, Mapping):
                at = f"{where}steps[{number}]."
                yield from _extra(step, "step", at)
                yield from _unread(step, STEP_SETTINGS, {"id", "type", "delay"}, "step", at)
                delay = step.get("delay")
                yield from _extra(delay, "delay", f"{at}delay.")
                yield from _unread(delay, DELAY_SETTINGS, {"kind"}, "delay", f"{at}delay.")
        for number, trigger in enumerate(sequence.get("triggers") or ()):
            at = f"{where}triggers[{number}]."
            yield from _extra(trigger, "trigger", at)
            yield from _unread(trigger, TRIGGER_SETTINGS, {"type", "action"}, "trigger", at)


def _unread(
    node: object,
    settings: Mapping[str, frozenset[str]],
    always: set[str],
    what: str,
    where: str,
) -> Iterator[str]:
    """Keys known to some kinds of `what` that this one's kind does not read."""
    if not isinstance(node, Mapping):
        return
    kind = node.get("kind" if what == "delay" else "type")
    read = settings.get(kind) if isinstance(kind, str) else None
    if read is None:
        return  # an unknown kind is refused elsewhere
    known = _known()[what]
    for key, value in node.items():
        # An empty value says nothing (a definition written out with its defaults filled).
        said = value not in (None, False, 0, "", [], {})
        if said and key in known and key not in read and key not in always:
            yield f"{where}{key}: not read by a {kind} {what}, ignored"


def _extra(node: object, kind: str, where: str) -> Iterator[str]:
    if not isinstance(node, Mapping):
        return
    known = _known()[kind]
    for key in node:
        if key not in known:
            yield f"{where}{key}: unknown key, ignored"
