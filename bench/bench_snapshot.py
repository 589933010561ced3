"""What a worker's snapshot (streams/snapshots.py) saves on a restart: the engine of a
prefix of the bench history, built by replay as a rebuild builds it, then pickled and read
back as the snapshot is. The time of each, the snapshot's size, and the memory pickling
leaves resident once freed, before and after `give_back_memory`.

    .venv/bin/python -m bench.bench_snapshot                   # prefixes of 100k and 1M lines
    .venv/bin/python -m bench.bench_snapshot --events 100000

The history is the replay benchmark's (bench/out/), generated when it is not there yet.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path
from typing import Any

from aggregates.engine import Engine
from bench.generate_history import DEFAULT_OUT, HistorySpec, write_history
from schemas.definitions import load_definition_file
from streams import embedded, snapshots


def _partition_of(_contact: str) -> int:
    return 0


def _resident_mb() -> int:
    """This process's resident memory now (Linux)."""
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) // 1024


def measure(events: int) -> dict[str, Any]:
    spec = HistorySpec()
    sequences = DEFAULT_OUT / f"{spec.name()}.sequences.json"
    history = DEFAULT_OUT / f"{spec.name()}.events.jsonl"
    if not history.exists():
        write_history(spec)
    definitions = load_definition_file(sequences)
    built: list[Engine] = []

    class Kept(Engine):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            built.append(self)

    embedded.Engine = Kept  # type: ignore[misc]
    with history.open("rb") as handle:
        started = time.process_time()
        embedded.replay(
            definitions, itertools.islice(handle, events), lambda _: None, lambda _: None
        )
        replayed = time.process_time() - started
    engine = built[0]
    engine.__class__ = Engine  # as a worker's engine is
    before = _resident_mb()
    started = time.process_time()
    body = snapshots._pickled(engine, _partition_of)
    pickled = time.process_time() - started
    size = len(body)
    del body
    for _ in range(2):  # as a worker keeps one every --snapshot-every seconds
        snapshots._pickled(engine, _partition_of)
    kept = _resident_mb() - before  # what three picklings leave resident, freed
    snapshots.give_back_memory()
    trimmed = _resident_mb() - before
    body = snapshots._pickled(engine, _partition_of)
    started = time.process_time()
    snapshots._unpickled(body, _partition_of)
    read = time.process_time() - started
    return {
        "events": events,
        "contacts": len(engine.contacts),
        "active_enrollments": engine.active_enrollments(),
        "replay_cpu_s": round(replayed, 2),
        "snapshot_mb": round(size / 1e6, 1),
        "pickle_cpu_s": round(pickled, 2),
        "resident_after_3_picklings_mb": kept,
        "resident_after_give_back_mb": trimmed,
        "read_cpu_s": round(read, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, action="append")
    args = parser.parse_args()
    for events in args.events or [100_000, 1_000_000]:
        print(measure(events), flush=True)


if __name__ == "__main__":
    main()
