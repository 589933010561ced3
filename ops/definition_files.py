"""Reading a sequence file for a command: refused with the reason (the caller exits 2), or
loaded with a warning for each key nothing reads."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

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
    for warning in unknown_keys(document):
        print(f"dripstream: {path}: warning: {warning}", file=sys.stderr)
    return document
