"""The worker's outbox relay (streams/relay.py) as a child process, watched from the
worker's loop: what it published, and what it had to dead-letter, go to the worker's
metrics, and a relay that died takes the worker down, loudly (decisions would pile up in
the outbox unseen)."""

from __future__ import annotations

import asyncio
import multiprocessing
from multiprocessing.context import SpawnProcess

from prometheus_client import Counter

from streams.relay import RelaySettings, start_relay_process


class _SharedCount:
    """A count the child adds to in shared memory (no pipe to drain), read into a
    counter of this process by what grew since the last look."""

    def __init__(self, counter: Counter) -> None:
        self.counter = counter
        self.value = multiprocessing.get_context("spawn").Value("q", 0)
        self.reported = 0

    def report(self) -> None:
        now = self.value.value
        if now > self.reported:
            self.counter.inc(now - self.reported)
            self.reported = now


class RelayChild:
    def __init__(self, settings: RelaySettings, published: Counter, dead_letters: Counter) -> None:
        self.settings = settings
        self.published = _SharedCount(published)
        self.dead_letters = _SharedCount(dead_letters)
        self.process: SpawnProcess | None = None

    def start(self) -> None:
        self.process = start_relay_process(
            self.settings, self.published.value, self.dead_letters.value
        )

    def check(self, *, stopping: bool = False) -> None:
        """Report what was published and dead-lettered since the last look; raise if the
        relay died while the worker is not stopping."""
        process = self.process
        if process is None:
            return
        self.published.report()
        self.dead_letters.report()
        if not stopping and not process.is_alive():
            raise RuntimeError(f"the outbox relay stopped (exit code {process.exitcode})")

    async def stop(self) -> None:
        """The relay publishes what is left in the outbox, then exits."""
        process = self.process
        if process is None:
            return
        if process.is_alive():
            process.terminate()  # SIGTERM: drain and stop
        await asyncio.to_thread(process.join)
        self.check(stopping=True)  # the count only: do not hide why the worker stops
