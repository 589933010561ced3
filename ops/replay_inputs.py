"""The input files of one `dripstream replay`, read one after the other as one history: the
engine keeps no state between runs, so a history split over files is replayed by naming
every file, in order. Each line's file and number within it are told back for messages."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from schemas.validation import UTF8_BOM


@dataclass(slots=True)
class InputFiles:
    """`lines()` yields every line of `files` in order; `where(n)` says where line n was."""

    files: list[tuple[Path, IO[bytes]]]
    # (lines before it, path) for each file reached so far.
    _starts: list[tuple[int, Path]] = field(default_factory=list)

    def lines(self) -> Iterator[bytes]:
        read = 0
        for path, handle in self.files:
            self._starts.append((read, path))
            first = read
            for raw in handle:
                # A later file's first line: its byte order mark is read past, as the whole
                # history's first line's is.
                later_first = read == first and read > 0
                read += 1
                yield raw.removeprefix(UTF8_BOM) if later_first else raw

    def where(self, number: int) -> tuple[Path, int]:
        """The file and the line within it of line `number` of the whole history."""
        before, path = next(
            (start for start in reversed(self._starts) if start[0] < number),
            (0, self.files[0][0]),
        )
        return path, number - before

    @property
    def label(self) -> str:
        """What messages about the history as a whole start with: its file, when one."""
        return f"{self.files[0][0]}: " if len(self.files) == 1 else ""

    def at(self, number: int) -> str:
        """Where line `number` is, after `label`: `line N`, or `FILE line N` of several."""
        path, line = self.where(number)
        return f"line {line}" if len(self.files) == 1 else f"{path} line {line}"

    def place(self, number: int) -> str:
        """`FILE: line N`, a message's start about that line."""
        path, line = self.where(number)
        return f"{path}: line {line}"
