"""`worker --processes N`'s supervision, with stand-in children: the first SIGTERM reaches
each child once, a second one kills them, and one child stopping stops the group."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from streams.processes import ignore_interrupts, install_stop_signals

ROOT = Path(__file__).resolve().parents[2]


def launch(mode: str, folder: Path) -> subprocess.Popen[bytes]:
    launcher = subprocess.Popen(
        [sys.executable, "-m", "tests.streams.supervised_children", mode, str(folder)],
        cwd=ROOT,
        start_new_session=True,  # a group of its own, as a terminal gives a command
    )
    wait_for(lambda: all((folder / f"{n}.ready").exists() for n in range(2)), launcher)
    return launcher


def wait_for(
    condition: Callable[[], bool], launcher: subprocess.Popen[bytes], seconds: float = 30
) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            launcher.kill()
            pytest.fail("timed out")
        time.sleep(0.05)


def signals_seen(folder: Path, n: int) -> int:
    path = folder / f"{n}.signals"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_one_sigterm_stops_obedient_children_and_the_group_exits_0(tmp_path: Path) -> None:
    launcher = launch("obedient", tmp_path)
    launcher.send_signal(signal.SIGTERM)
    assert launcher.wait(timeout=30) == 0
    assert [signals_seen(tmp_path, n) for n in range(2)] == [1, 1]


def test_a_second_sigterm_kills_children_that_do_not_stop(tmp_path: Path) -> None:
    # given children that take SIGTERM and go on (a stop that hangs)
    launcher = launch("stubborn", tmp_path)
    launcher.send_signal(signal.SIGTERM)
    wait_for(lambda: all(signals_seen(tmp_path, n) == 1 for n in range(2)), launcher)
    time.sleep(0.5)
    # then the first signal is passed on once, and the group waits for them
    assert launcher.poll() is None
    assert [signals_seen(tmp_path, n) for n in range(2)] == [1, 1]
    # when the user asks again, the children are killed and the group says it was not clean
    launcher.send_signal(signal.SIGTERM)
    assert launcher.wait(timeout=30) == 1
    assert [signals_seen(tmp_path, n) for n in range(2)] == [1, 1]


def test_one_child_stopping_stops_the_other_and_the_group_exits_1(tmp_path: Path) -> None:
    launcher = launch("crash", tmp_path)
    assert launcher.wait(timeout=30) == 1
    assert signals_seen(tmp_path, 1) == 1


def test_a_ctrl_c_to_the_group_tells_each_child_once_and_the_group_exits_0(
    tmp_path: Path,
) -> None:
    # given the launcher and its children in a process group, as a terminal runs them
    launcher = launch("obedient", tmp_path)
    # when Ctrl-C sends SIGINT to every process of the group
    os.killpg(launcher.pid, signal.SIGINT)
    # then each child is stopped once, by the launcher's SIGTERM, and all stop cleanly
    assert launcher.wait(timeout=30) == 0
    assert [signals_seen(tmp_path, n) for n in range(2)] == [1, 1]


def test_a_worker_that_ignores_ctrl_c_keeps_ignoring_it_once_it_runs() -> None:
    # given a process set up as a worker of --processes, when the worker installs its stop
    # handlers, then SIGINT stays ignored (or a Ctrl-C would reach it twice) and SIGTERM stops
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    loop = asyncio.new_event_loop()
    stopped: list[bool] = []
    try:
        ignore_interrupts()
        install_stop_signals(loop, lambda: stopped.append(True))
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGTERM)
        loop.run_until_complete(asyncio.sleep(0.1))
        assert stopped == [True]
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        loop.close()
        signal.signal(signal.SIGINT, before[0])
        signal.signal(signal.SIGTERM, before[1])


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_while_the_children_still_start_is_a_clean_stop(tmp_path: Path, signum: int) -> None:
    # given children still starting (no handler of their own yet)
    launcher = subprocess.Popen(
        [sys.executable, "-m", "tests.streams.supervised_children", "starting", str(tmp_path)],
        cwd=ROOT,
        start_new_session=True,
    )
    wait_for(lambda: all((tmp_path / f"{n}.started").exists() for n in range(2)), launcher)
    # when the group is told to stop: Ctrl-C to the whole group, as a terminal sends it, or
    # SIGTERM to the launcher
    if signum == signal.SIGINT:
        os.killpg(launcher.pid, signal.SIGINT)
    else:
        launcher.send_signal(signal.SIGTERM)
    # then it stops, exit 0: SIGINT was never theirs, and SIGTERM ended them as asked
    assert launcher.wait(timeout=30) == 0
