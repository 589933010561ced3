"""Keys of a sequence file that nothing reads: a typo (`remove_on_respnse`) would otherwise
leave the setting at its default without a word. They are named, not refused: the contract
lets files carry more than it lists, and a newer file must still load.
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
        yield from _extra(sequence.get("schedule"), "schedule", f"{where}schedule.")
        for number, step in enumerate(sequence.get("steps") or ()):
            if isinstance(step, Mapping):
                yield from _extra(step, "step", f"{where}steps[{number}].")
                yield from _extra(step.get("delay"), "delay", f"{where}steps[{number}].delay.")
        for number, trigger in enumerate(sequence.get("triggers") or ()):
            yield from _extra(trigger, "trigger", f"{where}triggers[{number}].")


def _extra(node: object, kind: str, where: str) -> Iterator[str]:
    if not isinstance(node, Mapping):
        return
    known = _known()[kind]
    for key in node:
        if key not in known:
            yield f"{where}{key}: unknown key, ignored"
