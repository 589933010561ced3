"""An output file that appears whole or not at all: written under a temporary name beside
it and put in place only when the command says the run is done, so a run that fails or is
interrupted (a full disk, a refused second output, Ctrl-C) leaves the file as it was, never
half a replay that looks like a whole one. A target that is no regular file (/dev/stdout,
a pipe) is written as is; the file keeps its mode (a new one gets the umask's), and a
link to it stays a link."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path
from types import TracebackType
from typing import IO


class WholeOrNothing:
    """`with WholeOrNothing(path) as output:` write to `output.stream`, and call
    `all_done(output, …)` once the run has ended as it should; leaving the `with` without
    it leaves `path` as it was."""

    def __init__(self, path: Path) -> None:
        # A link is followed: the file it names is replaced, the link stays.
        self.path = Path(os.path.realpath(path))
        self._temporary: str | None = None
        self.stream: IO[bytes]

    def __enter__(self) -> WholeOrNothing:
        if self.path.exists() and not self.path.is_file():
            self.stream = self.path.open("wb")
            return self
        try:
            handle, self._temporary = tempfile.mkstemp(
                prefix=f".{self.path.name}.", suffix=".partial", dir=self.path.parent
            )
        except OSError as error:
            raise OSError(error.errno, error.strerror, str(self.path)) from None
        # The mode the file would have had written in place: its own when it exists, else
        # what the umask leaves of rw-rw-rw- (mkstemp makes rw------- files).
        os.chmod(self._temporary, _mode_for(self.path))
        self.stream = os.fdopen(handle, "wb")
        return self

    def _place(self) -> None:
        if self._temporary is not None:
            os.replace(self._temporary, self.path)
            self._temporary = None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        with contextlib.suppress(OSError):
            self.stream.close()
        if self._temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._temporary)


def all_done(*outputs: WholeOrNothing | None) -> None:
    """Put the outputs of a run in place, each only once every one is written out: a
    second output that cannot be flushed (a full disk) leaves the first as it was too."""
    chosen = [output for output in outputs if output is not None]
    for output in chosen:
        output.stream.close()  # flushes: a full disk says so here
    for output in chosen:
        output._place()


def _mode_for(path: Path) -> int:
    with contextlib.suppress(OSError):
        return stat.S_IMODE(path.stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask
