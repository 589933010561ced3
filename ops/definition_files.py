"""Reading a sequence file for a command: refused with the reason (the caller exits 2), or
loaded with a warning for each key nothing reads, each sequence that loads `invalid`, each
ring-group member a step cannot reach and each new owner who cannot be told."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from aggregates.sequence import (
    build_account,
    build_sequence,
    unreached_members,
    untold_owners,
)
from schemas.definitions import DefinitionRejected, load_definition_file
from schemas.unknown_keys import unknown_keys


def load_or_explain(path: Path) -> dict[str, Any] | None:
    """The checked document, or None after saying on stderr why the file is refused."""
    try:
        document = load_definition_file(path)
    except DefinitionRejected as rejected:
        print(f"dripstream: {path}: {rejected}", file=sys.stderr)
        return None
    except OSError as error:
        print(f"dripstream: cannot read {path}: {error.strerror}", file=sys.stderr)
        return None
    for warning in definition_warnings(document):
        print(f"dripstream: {path}: warning: {warning}", file=sys.stderr)
    return document


def definition_warnings(document: dict[str, Any]) -> list[str]:
    """What the author of a checked file is told: keys nothing reads (a typo leaves a setting
    at its default), each sequence that loads `invalid` with its problems (it loads, CONTRACT
    §2, and only the read models or a rejected enrollment would tell the author otherwise),
    ring-group members a step cannot reach, and new owners who cannot be told. Judged by
    the file's own account (or the defaults, for a file without one)."""
    account = build_account(document.get("account"))
    built = [build_sequence(doc, account) for doc in document.get("sequences") or ()]
    return (
        unknown_keys(document)
        + [
            f"sequence {sequence.id!r} is invalid, nobody is enrolled in it:"
            f" {'; '.join(sequence.problems)}"
            for sequence in built
            if sequence.problems
        ]
        + [warning for sequence in built for warning in unreached_members(sequence, account)]
        + [warning for sequence in built for warning in untold_owners(sequence, account)]
    )
