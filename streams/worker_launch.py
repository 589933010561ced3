"""Launching `dripstream worker`: one engine worker in this process, or several in one
consumer group, each a process of its own under a supervising launcher."""

from __future__ import annotations

import asyncio
import multiprocessing
from dataclasses import replace

from streams.outages import log_as_service
from streams.processes import ignore_interrupts, supervise
from streams.worker import EngineWorker, WorkerSettings


def run_worker(settings: WorkerSettings) -> None:
    async def main() -> None:
        # aiokafka clients must be made inside the running loop.
        await EngineWorker(settings).run()

    asyncio.run(main())


def run_workers(settings: WorkerSettings, processes: int) -> int:
    """`processes` workers in one consumer group, each a process of its own, so the
    engines of different partition groups use different cores (once a sequence spans
    contacts, one of them holds every group and the others stand by). The first one runs the
    relay; process n serves the metrics of its own partitions on the metrics port + n.
    Exit status: 0 when all of them stopped cleanly."""
    port = settings.metrics_port
    if processes <= 1:
        run_worker(settings)
        return 0
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(
            target=_worker_process,
            args=(
                replace(
                    settings,
                    relay=settings.relay and n == 0,
                    metrics_port=None if port is None else port + n,
                ),
            ),
            name=f"dripstream-worker-{n}",
        )
        for n in range(processes)
    ]
    return supervise(children)


def _worker_process(settings: WorkerSettings) -> None:
    ignore_interrupts()
    # The process's name (dripstream-worker-<n>) on each line: the children share a log.
    log_as_service("%(asctime)s %(processName)s %(name)s %(levelname)s %(message)s")

    async def main() -> None:
        worker = EngineWorker(settings)
        parent = multiprocessing.parent_process()
        if parent is not None:
            # The launcher's end of this pipe closes when it dies, even by SIGKILL.
            asyncio.get_running_loop().add_reader(parent.sentinel, worker.stopping.set)
        await worker.run()

    asyncio.run(main())
