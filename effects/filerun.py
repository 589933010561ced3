"""Carry out the effect commands of a `.jsonl` file (no broker): demos, tests, crash drills.

Same processor and ledger as the Kafka worker. Run it twice over the same file and the
second run sends nothing: it re-emits the outcomes the ledger already holds. The file may be
a whole output stream (`dripstream replay --out`, `topics dump`): its other events are
skipped, as the worker skips what on `contacts` is not a command.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import BinaryIO

from effects.commands import EFFECT_TYPES, CommandRejected, decode_command, effect_id_of
from effects.settings import EffectsSettings
from effects.wiring import Runtime, open_runtime
from schemas.envelope import CloudEvent
from schemas.registry import EVENT_TYPES


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
    """0 when every line was a valid event, 1 when some were not (reported on stderr).

    Events that are not effect commands are skipped and counted in the closing summary.
    """
    runtime = runtime or await open_runtime(settings)
    out = outcomes.open("ab", buffering=0) if outcomes else sys.stdout.buffer
    taken = skipped = bad = 0
    try:
        _write(out, await runtime.processor.recover())
        batch: list[CloudEvent] = []
        with commands.open("rb") as lines:
            for number, line in enumerate(lines, start=1):
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
                    _write(out, await runtime.processor.handle_batch(batch))
                    runtime.processor.check_credentials()
                    batch = []
        if batch:
            _write(out, await runtime.processor.handle_batch(batch))
            runtime.processor.check_credentials()
        # Processors killed while this one ran may have left rows in flight.
        _write(out, await runtime.processor.recover())
    finally:
        if outcomes:
            out.close()
        await runtime.close()
    print(
        f"{commands}: {taken} effect commands, {skipped} other events skipped "
        f"(not effect commands), {bad} invalid lines",
        file=sys.stderr,
    )
    return 1 if bad else 0
