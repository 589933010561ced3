"""Whether a schema file changed only in the ways schemas/README.md calls additive.

A published version is a promise to producers and subscribers: a new optional field, a
new enum value, a wider type or a looser bound keep it; a removed field, a newly required
one, a narrower type, a lost enum value or a stricter bound break it and need a new version
(a new `.v<n+1>.schema.json` beside the old one). What this cannot judge (a changed
pattern, `oneOf` branches, references) counts as breaking: look at it by hand, and bump the
version or update the lock.

`python -m tests.schemas.compatibility --update` writes the lock from the shipped files,
refusing when one of them breaks what the lock holds; `--checked-by-hand` too writes it
anyway, for changes read by a person and found to widen only.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

import schemas

SCHEMA_DIR = Path(schemas.__file__).parent / "json"
LOCK = Path(__file__).with_name("published.lock.json")

# Words for people: changing them changes no instance's validity.
_PROSE = frozenset({"title", "description", "$comment", "examples", "default", "errorMessage"})
# Bounds that may only move outwards: (keyword, True when a larger value is looser).
_BOUNDS = {
    "minLength": False,
    "minItems": False,
    "minimum": False,
    "minProperties": False,
    "maxLength": True,
    "maxItems": True,
    "maximum": True,
    "maxProperties": True,
}


def breaking_changes(old: Any, new: Any, where: str = "") -> Iterator[str]:
    """Each way `new` refuses what `old` allowed (or may: see the module's note), as
    `<path>: <what changed>`."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        if old != new:
            yield f"{where or '/'}: changed from {old!r} to {new!r}"
        return
    for key in sorted(set(old) | set(new)):
        if key in _PROSE:
            continue
        path = f"{where}/{key}"
        if key in ("properties", "definitions"):
            yield from _keyword(key, old.get(key, {}), new.get(key, {}), path)
        elif key not in new:
            continue  # a rule dropped: what it refused is allowed now
        elif key not in old:
            if not (key == "additionalProperties" and new[key] is True):
                yield f"{path}: added (a new rule)"
        else:
            yield from _keyword(key, old[key], new[key], path)


def _keyword(key: str, old: Any, new: Any, path: str) -> Iterator[str]:
    if key in ("properties", "definitions"):  # named parts: each compared with its own
        for name in sorted(old):
            if name not in new:
                yield f"{path}/{name}: removed"
            else:
                yield from breaking_changes(old[name], new[name], f"{path}/{name}")
    elif key == "required":
        added = sorted(set(new) - set(old))
        if added:
            yield f"{path}: newly required {added}"
    elif key == "type":
        lost = sorted(_as_set(old) - _as_set(new))
        if lost:
            yield f"{path}: no longer allows {lost}"
    elif key == "enum":
        lost = [value for value in old if value not in new]
        if lost:
            yield f"{path}: lost the values {lost}"
    elif key in _BOUNDS:
        larger_is_looser = _BOUNDS[key]
        if (new < old) if larger_is_looser else (new > old):
            yield f"{path}: {old} → {new} is stricter"
    elif key == "additionalProperties":
        if old is not False and new is False:
            yield f"{path}: unknown fields are now refused"
        elif old is True and isinstance(new, dict):
            yield f"{path}: unknown fields must now match {_short(new)}"
        elif isinstance(old, dict) and isinstance(new, dict):
            yield from breaking_changes(old, new, path)
    elif key == "items":
        yield from breaking_changes(old, new, path)
    elif old != new:
        yield f"{path}: changed from {_short(old)} to {_short(new)}"


def _as_set(value: Any) -> set[str]:
    return {value} if isinstance(value, str) else set(value)


def _short(value: Any) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= 80 else text[:77] + "..."


def shipped() -> dict[str, Any]:
    """Every shipped schema file, by its path under schemas/json."""
    return {
        path.relative_to(SCHEMA_DIR).as_posix(): orjson.loads(path.read_bytes())
        for path in sorted(SCHEMA_DIR.rglob("*.json"))
    }


def locked() -> dict[str, Any]:
    found: dict[str, Any] = orjson.loads(LOCK.read_bytes())
    return found


def problems(lock: dict[str, Any], files: dict[str, Any]) -> list[str]:
    """What the shipped files break of the lock: a file gone, or a breaking change."""
    found: list[str] = []
    for name, old in lock.items():
        if name not in files:
            found.append(f"{name}: a published schema is gone")
        else:
            found.extend(f"{name}{change}" for change in breaking_changes(old, files[name]))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--update", action="store_true", help="write the lock from the files")
    parser.add_argument(
        "--checked-by-hand",
        action="store_true",
        help="with --update: write it though changes this cannot judge remain (a pattern"
        " that only widens, say), once a person has read each one listed",
    )
    args = parser.parse_args(argv)
    files = shipped()
    found = problems(locked(), files) if LOCK.exists() else []
    for problem in found:
        print(problem, file=sys.stderr)
    if found and not (args.update and args.checked_by_hand):
        print("breaking: add a new version of the schema instead", file=sys.stderr)
        return 1
    if args.update:
        LOCK.write_bytes(orjson.dumps(files, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        print(f"{LOCK.name}: {len(files)} schema files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
