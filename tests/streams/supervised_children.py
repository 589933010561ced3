"""A launcher for the supervision test: `python -m tests.streams.supervised_children MODE DIR`
runs two children under `streams.processes.supervise` and exits with its status. Each child
writes DIR/<n>.ready once its signal handler is in, and a line to DIR/<n>.signals per SIGTERM.

MODE `obedient`: a child exits 0 on SIGTERM. `stubborn`: it notes SIGTERM and goes on.
`crash`: child 0 exits 3 at once, child 1 is obedient. `starting`: each child writes
DIR/<n>.started and sleeps, as one still importing, before it sets any handler."""

from __future__ import annotations

import multiprocessing
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from streams.processes import ignore_interrupts, supervise


def child(mode: str, directory: str, n: int) -> None:
    folder = Path(directory)
    if mode == "starting":
        # Still importing (a worker's first seconds): no handler of its own yet.
        (folder / f"{n}.started").touch()
        time.sleep(30)

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        with (folder / f"{n}.signals").open("a") as signals:
            signals.write("SIGTERM\n")
        if mode != "stubborn":
            sys.exit(0)

    signal.signal(signal.SIGTERM, on_term)
    ignore_interrupts()  # as a worker of --processes does
    (folder / f"{n}.ready").touch()
    if mode == "crash" and n == 0:
        while not (folder / "1.ready").exists():  # child 1's handler in: it can be told
            time.sleep(0.05)
        sys.exit(3)
    while True:
        time.sleep(0.05)


def main() -> int:
    mode, directory = sys.argv[1], sys.argv[2]
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(target=child, args=(mode, directory, n), name=f"child-{n}")
        for n in range(2)
    ]
    return supervise(children)


if __name__ == "__main__":
    sys.exit(main())
