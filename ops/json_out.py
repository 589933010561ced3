"""JSON on standard output as UTF-8 bytes, as JSON is, whatever the terminal's encoding (an
ASCII or cp1252 one cannot encode an accented name, and a stand-in would corrupt the data)."""

from __future__ import annotations

import sys
from typing import Any

import orjson


def write_json(value: Any, *, newline: bool = True) -> None:
    text = orjson.dumps(value, option=orjson.OPT_INDENT_2) + (b"\n" if newline else b"")
    binary = getattr(sys.stdout, "buffer", None)  # none when redirected to a StringIO
    if binary is None:
        sys.stdout.write(text.decode())
        return
    sys.stdout.flush()
    binary.write(text)
