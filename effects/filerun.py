"""Carry out the effect commands of a `.jsonl` file (no broker): demos, tests, crash drills.

Same processor and ledger as the Kafka worker. Run it twice over the same file and the
second run sends nothing: it re-emits the outcomes the ledger already holds.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import BinaryIO

from effects.commands import CommandRejected, decode_command, effect_id_of
from effects.settings import EffectsSettings
from effects.wiring import Runtime, open_runtime
from schemas.envelope import CloudEvent


def _write(out: BinaryIO, events: list[CloudEvent]) -> None:
    # One write per batch on an unbuffered file: a kill leaves whole lines behind.
    if events:
        out.write(b"".join(event.encode() + b"\n" for event in events))
        out.flush()


async def run_commands_file(
    settings: EffectsSettings,
    commands: Path,
    outcomes: Path | None = None,
    *,
    runtime: Runtime | None = None,
) -> int:
    """0 when every line was a command, 1 when some were not (reported on stderr)."""
    runtime = runtime or await open_runtime(settings)
    out = outcomes.open("ab", buffering=0) if outcomes else sys.stdout.buffer
    bad = 0
    try:
        _write(out, await runtime.processor.recover())
        batch: list[CloudEvent] = []
        with commands.open("rb") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    command = decode_command(line)
                    effect_id_of(command)
                except CommandRejected as error:
                    print(f"{commands}:{number}: {error}", file=sys.stderr)
                    bad += 1
                    continue
                batch.append(command)
                if len(batch) >= settings.batch_size:
                    _write(out, await runtime.processor.handle_batch(batch))
                    batch = []
        if batch:
            _write(out, await runtime.processor.handle_batch(batch))
        # Processors killed while this one ran may have left rows in flight.
        _write(out, await runtime.processor.recover())
    finally:
        if outcomes:
            out.close()
        await runtime.close()
    return 1 if bad else 0
