"""Several output-stream files read as one, in the order given, for `projections rebuild`:
its bulk load reads one file (twice, in two processes), and its position counts that file's
lines, so the files are joined into one and each line's number is told back per file."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from projections.stream import count_lines


@dataclass(frozen=True, slots=True)
class JoinedFiles:
    """The one file to read, and where each of its lines came from."""

    path: Path
    parts: tuple[tuple[Path, int], ...]  # each file given and its number of lines

    def origin(self, line: int) -> tuple[Path, int]:
        """The file and the line within it of line `line` of the joined file."""
        before = 0
        for path, lines in self.parts:
            if line <= before + lines:
                return path, line - before
            before += lines
        last, lines = self.parts[-1]
        return last, line - before + lines


@contextmanager
def joined(paths: list[Path]) -> Iterator[JoinedFiles]:
    """One file holding `paths` one after the other (each ended with a newline, so the last
    line of one never runs into the first of the next); a single file is read as it is.
    Raises OSError when one cannot be read."""
    parts = tuple((path, count_lines(path)) for path in paths)
    if len(paths) == 1:
        yield JoinedFiles(paths[0], parts)
        return
    with tempfile.TemporaryDirectory(prefix="dripstream-history-") as folder:
        target = Path(folder) / "joined.jsonl"
        with target.open("w+b") as out:
            for path in paths:
                with path.open("rb") as source:
                    shutil.copyfileobj(source, out, 1 << 20)
                if out.tell():
                    out.seek(-1, os.SEEK_END)
                    if out.read(1) != b"\n":
                        out.write(b"\n")
        yield JoinedFiles(target, parts)
