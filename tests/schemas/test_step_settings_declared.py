"""Every step setting the engine reads is one the definition schema declares: a setting read
but not declared is named as an unknown key on every load (and is missing from the
schema the README points producers to)."""

from __future__ import annotations

import ast
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[2]
READERS = [ROOT / "aggregates" / "steps.py", ROOT / "aggregates" / "sequence.py"]


def _settings_read(source: str) -> set[str]:
    """The literal keys of `step.get("key")`, `step["key"]` and `self._text(step, "key")`."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            on_step = isinstance(node.func.value, ast.Name) and node.func.value.id == "step"
            if on_step and node.func.attr == "get":
                key = node.args[0]
            elif node.func.attr == "_text" and len(node.args) == 2:
                key = node.args[1]
            else:
                continue
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                found.add(key.value)
        subscript = isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name)
        if subscript and node.value.id == "step" and isinstance(node.slice, ast.Constant):
            found.add(str(node.slice.value))
    return found


def test_every_step_setting_the_engine_reads_is_declared() -> None:
    schema = orjson.loads((ROOT / "schemas" / "json" / "sequences.schema.json").read_bytes())
    step = schema["definitions"]["step"]
    declared = set((step.get("properties") or step["allOf"][0]["properties"]).keys())
    read = set().union(*(_settings_read(path.read_text()) for path in READERS))
    assert read, "the scan found no step settings: it no longer matches the code"
    assert {"text", "repeat_message", "owners"} <= read
    assert read - declared == set()
