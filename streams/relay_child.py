"""The worker's outbox relay (streams/relay.py) as a child process, watched from the
worker's loop: its published count goes to the worker's metric, and a relay that died
takes the worker down, loudly (decisions would pile up in the outbox unseen)."""

from __future__ import annotations

import asyncio
import multiprocessing
from multiprocessing.context import SpawnProcess

from prometheus_client import Counter

from streams.relay import RelaySettings, start_relay_process


class RelayChild:
    def __init__(self, settings: RelaySettings, published: Counter) -> None:
        self.settings = settings
        self.published = published
        self.process: SpawnProcess | None = None
        # Counted by the child, read here: shared memory, no pipe to drain.
        self.count = multiprocessing.get_context("spawn").Value("q", 0)
        self.reported = 0

    def start(self) -> None:
        self.process = start_relay_process(self.settings, self.count)

    def check(self, *, stopping: bool = False) -> None:
        """Report what was published since the last look; raise if the relay died while
        the worker is not stopping."""
        process = self.process
        if process is None:
            return
        published = self.count.value
        if published > self.reported:
            self.published.inc(published - self.reported)
            self.reported = published
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
