"""Snapshots of a worker's engine, so that a restart does not replay the whole store.

Without one, every assignment rebuilds the engine from every stored input of its groups
(streams/engine_rebuild.py), which takes longer as the history grows. A worker keeps its
engine here, pickled, now and then and when it stops cleanly, everything it decided written:
for the partition groups it holds, with the notification id of the last record its state
covers (its own last write, or the last record its rebuild read). The next rebuild of
exactly those groups (same partition count, same clock) starts from it and replays only
the records stored after that id, provided they all come after the snapshot's records in a
full replay's order (none decided under older definitions) and the code is the same: a
fingerprint of the domain's source and of the libraries whose objects the engine holds.
Otherwise the rebuild replays the store, as if there were no snapshot: a snapshot can only
save time, never decide anything.

Pickle runs code named in its bytes when read: only the engine's own classes and a few of
the standard library's may be named (anything else is refused, and the store replayed),
and the table is otherwise trusted as the store itself is (whoever may write the engine's
tables already decides what the worker publishes).
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.metadata
import io
import logging
import pickle
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from types import FunctionType, MethodType
from typing import Any

from aggregates.engine import Engine
from streams.outages import DATABASE_LOST
from streams.store import TRACKING_TABLE, EngineStore, tracking_name

log = logging.getLogger("dripstream.worker")

# The sources whose classes a pickled engine holds, those that decide how a rebuild goes
# on from it (streams/: the replay's order, the partitioner), and the libraries whose
# objects it holds.
_DOMAIN = ("aggregates", "schemas", "streams")
_LIBRARIES = ("holidays", "phonenumbers", "tzdata")
_PARTITION_OF = "partition_of"
KEPT_DAYS = 7  # how long a snapshot of streams no worker keeps again stays


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a kept engine covers; `engine_of` reads the engine itself."""

    key: str
    last_record: int  # the notification id of the last record its state covers
    applied: int  # the definitions version in force in it
    spanned: bool  # a sequence spanned contacts in some definitions it adopted
    taken_at: datetime


def held_key(clock: str, partition_count: int, names: Iterable[str]) -> str:
    """What a snapshot is kept under: the input streams it decided (`topic:partition`), of
    topics of `partition_count` partitions, by `clock`; any other is another engine."""
    return f"{clock}:{partition_count}:{','.join(sorted(names))}"


@cache
def code_fingerprint() -> str:
    """The domain's and the runners' source files and the library versions, hashed: a
    snapshot written by other code may hold objects this code reads otherwise, or have been
    rebuilt in another order."""
    digest = hashlib.sha256(sys.version.encode())
    for name in _LIBRARIES:
        digest.update(f"{name}={importlib.metadata.version(name)}".encode())
    root = Path(__file__).resolve().parent.parent
    for package in _DOMAIN:
        for path in sorted((root / package).rglob("*")):
            if path.suffix in {".py", ".json"} and path.is_file():
                digest.update(path.relative_to(root).as_posix().encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()


def save(
    store: EngineStore,
    key: str,
    engine: Engine,
    partition_of: Callable[[str], int],
    *,
    last_record: int,
    applied: int,
    spanned: bool,
    progress: Mapping[int, int],
) -> int:
    """Keep `engine` as the snapshot of `key`: its state covers the store's records up to
    the notification id `last_record` (its own last write, or what its rebuild read; a
    global maximum could hold another worker's records it never saw). Its size.

    `progress` is each held group's tracking as the engine knows it. Another worker (one
    that held a group before and writes still) may have recorded an input of a group below
    `last_record` after this engine was rebuilt: the group's tracking in the store then
    differs, and no snapshot is kept (SnapshotBehindError), as a rebuild from it would skip
    that input for good. A record committed after this check draws ids above
    `last_record` (the write lock), so a rebuild from the snapshot replays it."""
    try:
        body = _pickled(engine, partition_of)
        return _keep(store, key, body, last_record, applied, spanned, progress)
    finally:
        give_back_memory()


def _keep(
    store: EngineStore,
    key: str,
    body: bytes,
    last_record: int,
    applied: int,
    spanned: bool,
    progress: Mapping[int, int],
) -> int:
    schema = store.datastore.schema
    with store.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
        behind = _recorded_elsewhere(curs, schema, progress)
        if behind:
            raise SnapshotBehindError(
                f"partition group(s) {behind} were recorded by another worker since this"
                " one rebuilt them"
            )
        curs.execute(
            f"INSERT INTO {schema}.dripstream_snapshots"  # noqa: S608
            " (held, code, last_record, applied, spanned, body) VALUES (%s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (held) DO UPDATE SET code = excluded.code,"
            " last_record = excluded.last_record, applied = excluded.applied,"
            " spanned = excluded.spanned, taken_at = now(), body = excluded.body",
            (key, code_fingerprint(), last_record, applied, spanned, body),
        )
        # No code reads another release's snapshots; those of streams no worker has held
        # for a while (a rebalance spread them otherwise) would only take room.
        curs.execute(
            f"DELETE FROM {schema}.dripstream_snapshots"  # noqa: S608
            " WHERE code <> %s OR (held <> %s AND taken_at < now() - %s * interval '1 day')",
            (code_fingerprint(), key, KEPT_DAYS),
        )
    return len(body)


def give_back_memory() -> None:
    """Pickling the engine takes several times the snapshot's size for a moment (the
    pickler's memo of every object, the growing buffer). Freed, the C library keeps those
    pages, so a worker's resident memory would stay at its highest step for good (+40 MB
    for a 7 MB snapshot, measured): glibc's malloc_trim hands them back. Nothing where
    the C library has none."""
    if (trim := _malloc_trim()) is not None:
        trim(0)


@cache
def _malloc_trim() -> Any:
    try:
        return getattr(ctypes.CDLL(None), "malloc_trim", None)
    except (OSError, TypeError):  # no C library to open by name here
        return None


class SnapshotBehindError(Exception):
    """The engine has not seen every record of its groups: it is no snapshot of them."""


def _recorded_elsewhere(curs: Any, schema: str, progress: Mapping[int, int]) -> list[int]:
    """The groups whose tracking in the store is not what the engine knows (none: 0)."""
    names = {tracking_name(group): group for group in progress}
    curs.execute(
        f"SELECT application_name, notification_id FROM {schema}.{TRACKING_TABLE}"  # noqa: S608
        " WHERE application_name = ANY(%s)",
        (list(names),),
    )
    stored = {names[row["application_name"]]: int(row["notification_id"]) for row in curs}
    return sorted(g for g, known in progress.items() if stored.get(g, 0) != known)


def find(store: EngineStore, key: str) -> Snapshot | None:
    """The snapshot of `key` written by this code, without its engine (its body is read
    only once the rebuild knows it can start from it), or None."""
    schema = store.datastore.schema
    row = _readable(
        store,
        "SELECT last_record, applied, spanned, taken_at"  # noqa: S608
        f" FROM {schema}.dripstream_snapshots WHERE held = %s AND code = %s",
        (key, code_fingerprint()),
    )
    if row is None:
        return None
    return Snapshot(
        key, int(row["last_record"]), int(row["applied"]), row["spanned"], row["taken_at"]
    )


def engine_of(
    store: EngineStore, snapshot: Snapshot, partition_of: Callable[[str], int]
) -> Engine | None:
    """The engine `snapshot` kept; None when it cannot be read, or was replaced since."""
    schema = store.datastore.schema
    row = _readable(
        store,
        f"SELECT body FROM {schema}.dripstream_snapshots"  # noqa: S608
        " WHERE held = %s AND code = %s AND last_record = %s",
        (snapshot.key, code_fingerprint(), snapshot.last_record),
    )
    if row is None:
        return None
    try:
        return _unpickled(bytes(row["body"]), partition_of)
    except Exception as error:  # any snapshot that cannot be read means: replay the store
        log.warning("the engine's snapshot could not be read (%s); replaying the store", error)
        return None


def _readable(store: EngineStore, query: str, arguments: tuple[Any, ...]) -> Any:
    """One row of the snapshots table, or None: also when it cannot be read for any reason
    but a lost PostgreSQL, which the rebuild waits out as any read of the store."""
    try:
        with store.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(query, arguments)
            row = curs.fetchone()
            conn.commit()
    except DATABASE_LOST:
        raise
    except Exception as error:  # a snapshot that cannot be read means: replay the store
        log.warning("the engine's snapshot could not be read (%s); replaying the store", error)
        return None
    return row


def _pickled(engine: Engine, partition_of: Callable[[str], int]) -> bytes:
    """The engine's bytes, its `partition_of` (the worker's, which holds the consumer)
    left out by name and given back by `_unpickled`."""

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj: Any) -> str | None:
            if type(obj) in (MethodType, FunctionType) and obj == partition_of:
                return _PARTITION_OF
            return None

    out = io.BytesIO()
    Pickler(out, protocol=pickle.HIGHEST_PROTOCOL).dump(engine)
    return out.getvalue()


# What a snapshot's bytes may name: the engine's own classes and the standard library's
# few it holds. Anything else (a function to call, say) is refused, and the store replayed.
_TRUSTED_PACKAGES = ("aggregates.", "schemas.", "holidays.")
_TRUSTED_MODULES = frozenset({"datetime", "collections", "zoneinfo", "zoneinfo._zoneinfo"})
_TRUSTED_BUILTINS = frozenset({"set", "frozenset", "dict", "list", "tuple", "object"})


def _trusted(module: str, name: str) -> bool:
    if module == "builtins":
        return name in _TRUSTED_BUILTINS
    return module in _TRUSTED_MODULES or module.startswith(_TRUSTED_PACKAGES)


def _unpickled(body: bytes, partition_of: Callable[[str], int]) -> Engine:
    class Unpickler(pickle.Unpickler):
        def persistent_load(self, pid: Any) -> Any:
            if pid == _PARTITION_OF:
                return partition_of
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")

        def find_class(self, module: str, name: str) -> Any:
            if not _trusted(module, name):
                raise pickle.UnpicklingError(f"a snapshot may not name {module}.{name}")
            return super().find_class(module, name)

    engine = Unpickler(io.BytesIO(body)).load()  # the store's own bytes (see above)
    if not isinstance(engine, Engine):
        raise TypeError(f"a snapshot holds a {type(engine).__name__}, not an Engine")
    return engine
