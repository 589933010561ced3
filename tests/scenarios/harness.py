"""Runs a worked scenario through the real `dripstream replay` command and reads what it wrote.

Each folder here holds `sequences.yaml`, `events.jsonl` and `expected.md`; the first line of
`expected.md` is the command whose decisions the prose describes, `--until` included.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import orjson

from ops.cli import main
from tests.engine.helpers import events_of, one_of

HERE = Path(__file__).resolve().parent
_UNTIL = re.compile(r"--until\s+([0-9][0-9T:.+\-Z]*)")


def scenario_names() -> list[str]:
    return sorted(p.name for p in HERE.iterdir() if (p / "sequences.yaml").is_file())


def folder(name: str) -> Path:
    return HERE / name


def until_of(name: str) -> str | None:
    """The `--until` of the command named on the first line of the scenario's expected.md."""
    first = (folder(name) / "expected.md").read_text(encoding="utf-8").splitlines()[0]
    match = _UNTIL.search(first)
    return match.group(1) if match else None


def replay_arguments(name: str, out: Path) -> list[str]:
    arguments = [
        "replay",
        "--sequences",
        str(folder(name) / "sequences.yaml"),
        "--events",
        str(folder(name) / "events.jsonl"),
        "--out",
        str(out),
    ]
    until = until_of(name)
    if until is not None:
        arguments += ["--until", until]
    return arguments


@dataclass(frozen=True)
class Replay:
    """What one `dripstream replay` run gave: exit status, stderr and the output events."""

    status: int
    stderr: str
    raw: bytes
    out: Path

    @cached_property
    def events(self) -> list[dict[str, Any]]:
        # Parsed once per run: every lookup below reads them (a property re-parsed the whole
        # output for each assertion).
        return [orjson.loads(line) for line in self.raw.splitlines() if line.strip()]

    def of(self, kind: str, **data: Any) -> list[dict[str, Any]]:
        return events_of(self.events, kind, **data)

    def one(self, kind: str, **data: Any) -> dict[str, Any]:
        return one_of(self.events, kind, **data)

    def none(self, kind: str, **data: Any) -> None:
        found = self.of(kind, **data)
        assert found == [], f"expected no {kind} {data}, got {found}"

    def times(self, kind: str, **data: Any) -> list[str]:
        return [e["time"] for e in self.of(kind, **data)]

    def contacts(self, kind: str, **data: Any) -> list[str]:
        return [e["data"]["contact_id"] for e in self.of(kind, **data)]

    def deferrals(self, contact: str, step: str, sequence: str | None = None) -> list[Any]:
        """(reason, from, to) of each step.deferred of one contact's step, in output order."""
        filters: dict[str, Any] = {"contact_id": contact, "step_id": step}
        if sequence is not None:
            filters["sequence_id"] = sequence
        return [
            (e["data"]["reason"], e["data"]["from"], e["data"]["to"])
            for e in self.of("step.deferred", **filters)
        ]


def run_cli(arguments: list[str]) -> tuple[int, str, str]:
    """`dripstream ARGUMENTS` in this process: exit status, stdout, stderr."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with redirect_stdout(stdout), redirect_stderr(stderr):
        status = main(arguments)
    return status, stdout.getvalue(), stderr.getvalue()


def replay(name: str, workdir: Path) -> Replay:
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / f"{name}.out.jsonl"
    status, _, stderr = run_cli(replay_arguments(name, out))
    raw = out.read_bytes() if out.exists() else b""
    return Replay(status, stderr, raw, out)


def sequences_list(history: Path) -> dict[str, dict[str, Any]]:
    """`dripstream sequences list --history FILE --json`, by sequence id."""
    status, stdout, stderr = run_cli(["sequences", "list", "--history", str(history), "--json"])
    assert status == 0, stderr
    rows: list[dict[str, Any]] = orjson.loads(stdout)
    return {row["id"]: row for row in rows}


def stderr_lines_about(stderr: str, line: int) -> Iterator[str]:
    """The stderr lines that report input line `line` (as `line N:` or `FILE:N:`)."""
    pattern = re.compile(rf"(\bline {line}:|\.jsonl:{line}:)")
    return (text for text in stderr.splitlines() if pattern.search(text))
