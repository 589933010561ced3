"""Running workers as processes of their own: a launcher that supervises its children as
one group, and the stop signals each child takes (Ctrl-C is the launcher's to pass on)."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal
from collections.abc import Callable
from multiprocessing.context import SpawnProcess


def supervise(children: list[SpawnProcess]) -> int:
    """Start the children and wait: one stopping stops the others; the first SIGTERM or
    SIGINT is passed on to each child once, as SIGTERM (the children ignore SIGINT), a
    second one kills them. Exit status: 0 when all of them stopped cleanly."""
    # Ignored while they start, SIGINT stays ignored in each child (an ignored signal stays
    # so across exec, and Python leaves it so): a Ctrl-C while a child still imports would
    # otherwise end it with a traceback before it could ignore it itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for child in children:
        child.start()

    stopped: set[int] = set()
    asked = 0

    def stop_children(signum: int) -> None:
        # Once per child: a second SIGTERM reaching a worker already past its own stop
        # (its asyncio handler gone) would kill it, and the group would exit 1.
        for child in children:
            if child.is_alive() and child.pid is not None and child.pid not in stopped:
                stopped.add(child.pid)
                os.kill(child.pid, signum)

    def on_signal(_signum: int, _frame: object) -> None:
        nonlocal asked
        asked += 1
        if asked == 1:
            # SIGTERM whatever came: a Ctrl-C reaches the children too, from the terminal,
            # and they ignore SIGINT so that each is told once, by this launcher.
            stop_children(signal.SIGTERM)
            return
        # Asked again: the one way to end a stop that hangs (the children's own second
        # signal would do nothing, they are already stopping).
        for child in children:
            if child.is_alive() and child.pid is not None:
                os.kill(child.pid, signal.SIGKILL)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # One worker stopping (a crash, a signal) stops the others: the group is the unit.
    multiprocessing.connection.wait([child.sentinel for child in children])
    stop_children(signal.SIGTERM)
    for child in children:
        child.join()
    # A child told to stop while it was still starting ends by the SIGTERM itself, before
    # its own handler is there: a clean stop when the launcher was asked to stop.
    clean = {0, -signal.SIGTERM} if asked else {0}
    return 0 if all(child.exitcode in clean for child in children) else 1


def install_stop_signals(loop: asyncio.AbstractEventLoop, stop: Callable[[], None]) -> None:
    """SIGTERM and SIGINT call `stop`, but a signal the process ignores stays ignored (a
    worker of `--processes` ignores SIGINT: its launcher decides, see ignore_interrupts)."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        if signal.getsignal(sig) is signal.SIG_IGN:
            continue
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop)


def ignore_interrupts() -> None:
    """A worker of `--processes`: a Ctrl-C reaches it from the terminal, and its launcher
    passes it on as SIGTERM; taking both would tell it twice."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
