"""Carry out the effect commands of a `.jsonl` file (no broker): demos, tests, crash drills.

Same processor and ledger as the Kafka worker. Run it twice over the same file and the
second run sends nothing: it re-emits the outcomes the ledger already holds. The file may be
a whole output stream (`dripstream replay --out`, `topics dump`): its other events are
skipped, as the worker skips what on `contacts` is not a command.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import BinaryIO

from effects.commands import EFFECT_TYPES, CommandRejected, decode_command, effect_id_of
from effects.settings import EffectsSettings
from effects.wiring import Runtime, open_runtime
from schemas.envelope import CloudEvent
from schemas.registry import EVENT_TYPES

# The exit status of a run a signal stopped (128 + SIGINT, as shells report it).
STOPPED = 130


def _stop_on_signals(runtime: Runtime) -> asyncio.Event:
    """SIGTERM or SIGINT: read no more commands, and end the retries' and lines' waits, so
    the sends in progress finish and are recorded rather than being cut off in flight
    (which the next run could only report `unknown`)."""
    stopped = asyncio.Event()

    def stop() -> None:
        stopped.set()
        runtime.processor.stop_retrying()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop)
    return stopped


def _forget_signals() -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signum)


def _write(out: BinaryIO, events: list[CloudEvent]) -> None:
    # One write per batch on an unbuffered file: a kill leaves whole lines behind.
    if events:
        out.write(b"".join(event.encode() + b"\n" for event in events))
        out.flush()


def _is_command(event: CloudEvent) -> bool:
    """True for an effect command; False for another known event, which is not ours.
    Only the type decides: `step.executed` carries the effect id of the command it caused."""
    if event.type in EFFECT_TYPES:
        return True
    if event.type not in EVENT_TYPES:
        raise CommandRejected("type", f"unknown event type {event.type!r}")
    return False


async def run_commands_file(
    settings: EffectsSettings,
    commands: Path,
    outcomes: Path | None = None,
    *,
    runtime: Runtime | None = None,
) -> int:
    """0 when every line was a valid event, 1 when some were not (reported on stderr),
    STOPPED when a signal stopped the run.

    Events that are not effect commands are skipped and counted in the closing summary.
    """
    runtime = runtime or await open_runtime(settings)
    try:
        out = outcomes.open("ab", buffering=0) if outcomes else sys.stdout.buffer
    except BaseException:
        await runtime.close()  # its ledger's connections and the providers' clients
        raise
    taken = skipped = bad = 0
    stopped = _stop_on_signals(runtime)
    try:
        _write(out, await runtime.processor.recover())
        batch: list[CloudEvent] = []
        with commands.open("rb") as lines:
            for number, line in enumerate(lines, start=1):
                if stopped.is_set():
                    break
                if not line.strip():
                    continue
                try:
                    event = decode_command(line)
                    if not _is_command(event):
                        skipped += 1
                        continue
                    effect_id_of(event)
                except CommandRejected as error:
                    print(f"{commands}:{number}: {error}", file=sys.stderr)
                    bad += 1
                    continue
                taken += 1
                batch.append(event)
                if len(batch) >= settings.batch_size:
                    _write(out, await runtime.processor.handle_batch(batch, abandoned_ok=True))
                    runtime.processor.check_credentials()
                    batch = []
        if batch and not stopped.is_set():
            _write(out, await runtime.processor.handle_batch(batch, abandoned_ok=True))
            runtime.processor.check_credentials()
        # Processors killed while this one ran may have left rows in flight.
        _write(out, await runtime.processor.recover())
    finally:
        if outcomes:
            out.close()
        await runtime.close()
        _forget_signals()
    if stopped.is_set():
        again = (
            "run it again to carry them out: the ledger sends none twice"
            if settings.database_url
            else "the ledger was in memory, so a run again would send those done again too"
        )
        print(
            f"{commands}: stopped by a signal after {taken} effect commands read; sends in"
            f" progress were finished, the rest are not carried out; {again}",
            file=sys.stderr,
        )
        return STOPPED
    print(
        f"{commands}: {taken} effect commands, {skipped} other events skipped "
        f"(not effect commands), {bad} invalid lines",
        file=sys.stderr,
    )
    return 1 if bad else 0
