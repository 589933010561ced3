"""Read models in PostgreSQL: how fast `projections rebuild` loads an output stream, and how
fast `history` answers over the tables it leaves.

1. **rebuild**: N output events (from `streams.embedded.replay` over the synthetic history,
   written once to `bench/out/readmodels-outputs-N.jsonl`) loaded into a fresh database with
   `PostgresProjection.rebuild`, the bulk path of `projections rebuild` (COPY into staging
   tables, indexes after the rows, then a swap), timed from opening the file to the commit:
   events/s (target >= 50,000), and each step's seconds. `--apply` also times the
   incremental path (`apply` in batches of `--batch-size`, what a live feed and `--resume`
   use) on the same stream, in another schema;
2. **history**: `--queries` queries with a mix of search, kind, timeframe (fixed `now`),
   limit 50 and offsets against the busiest sequences: p50/p95/p99 ms (target p95 < 50 ms),
   and `EXPLAIN ANALYZE` of the statements of the slowest one. `--verify` also checks every
   answer against the in-memory report of the same stream (slow; not timed).

    .venv/bin/python -m bench.bench_readmodels --events 100000
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg
from psycopg import conninfo, sql

from bench.generate_history import HistorySpec, write_history
from bench.prerequisites import run_main
from ops.readmodel_cli import REBUILD_BATCH
from projections.history import EVENT_KINDS, TIMEFRAMES, HistoryQuery, HistoryReport
from projections.loading import load_into
from projections.pg_reads import DEFAULT_SCHEMA
from projections.postgres import PostgresProjection
from projections.stream import LineError, Positioned, read_stream
from schemas.definitions import load_definition_file
from streams.embedded import RejectedLine, replay

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
HISTORY = OUT / "history-1000000-q100-c100000-s3"
DEFAULT_URL = "postgresql://dripstream_test:dripstream_test@127.0.0.1:55432/dripstream_test"
WRITE_CHUNK = 5000


# --- the output stream ---------------------------------------------------------------------


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


def output_stream(events: int, history: Path) -> tuple[Path, dict[str, Any]]:
    """The first `events` outputs of a replay of the history, written once and reused."""
    out = OUT / f"readmodels-outputs-{events}.jsonl"
    if out.exists() and _count_lines(out) >= events:
        return out, {"reused": True}
    definitions = load_definition_file(Path(f"{history}.sequences.json"))
    produced = [0]
    inputs = [0]
    buffer: list[bytes] = []
    tmp = out.with_suffix(".tmp")
    started = time.perf_counter()
    with tmp.open("wb") as sink_file, Path(f"{history}.events.jsonl").open("rb") as source:

        def flush() -> None:
            if buffer:
                sink_file.write(b"\n".join(buffer) + b"\n")
                buffer.clear()

        def sink(batch: list[Any]) -> None:
            for event in batch:
                if produced[0] >= events:
                    return
                buffer.append(event.encode())
                produced[0] += 1
            if len(buffer) >= WRITE_CHUNK:
                flush()

        def lines() -> Iterator[bytes]:
            # Stop reading input as soon as enough outputs exist (bounded by the file).
            for raw in source:
                if produced[0] >= events:
                    return
                inputs[0] += 1
                yield raw

        def on_rejected(line: RejectedLine) -> None:
            pass

        stats = replay(definitions, lines(), sink, on_rejected)
        flush()
    tmp.replace(out)
    return out, {
        "reused": False,
        "inputs_read": inputs[0],
        "replay_inputs": stats.inputs,
        "outputs": produced[0],
        "seconds": time.perf_counter() - started,
    }


# --- a fresh database ----------------------------------------------------------------------


def create_database(admin_url: str) -> tuple[str, str]:
    name = f"dripstream_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params = conninfo.conninfo_to_dict(admin_url)
    params["dbname"] = name
    return name, conninfo.make_conninfo(**params)


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


# --- 1. rebuild ----------------------------------------------------------------------------


def measure_rebuild(projection: PostgresProjection, path: Path, workers: int) -> dict[str, Any]:
    """The bulk rebuild, as `projections rebuild` runs it, from the file to the commit."""
    cpu, started = os.times(), time.perf_counter()
    rebuilt = projection.rebuild(path, workers=workers)
    seconds = time.perf_counter() - started
    ended = os.times()
    return {
        "records": rebuilt.records,
        "applied": rebuilt.applied,
        "errors": len(rebuilt.errors),
        "seconds": seconds,
        "steps": rebuilt.seconds,
        # this process and its waited-for children (the second loader)
        "cpu": (ended.user + ended.system + ended.children_user + ended.children_system)
        - (cpu.user + cpu.system + cpu.children_user + cpu.children_system),
        "rate": rebuilt.records / seconds if seconds else 0.0,
    }


def measure_apply(projection: PostgresProjection, path: Path, batch_size: int) -> dict[str, Any]:
    """The incremental path over the same stream: `apply` in batches from empty tables."""
    projection.ensure_schema()
    projection.reset()
    applied = records = 0
    batch: list[Positioned] = []
    started = time.perf_counter()
    for item in read_stream(path):
        if isinstance(item, LineError):
            continue
        records += 1
        batch.append(item)
        if len(batch) >= batch_size:
            applied += projection.apply(batch)
            batch = []
    applied += projection.apply(batch)
    seconds = time.perf_counter() - started
    return {"records": records, "seconds": seconds, "rate": records / seconds}


def table_sizes(conn: psycopg.Connection[Any], schema: str) -> list[tuple[str, int, str]]:
    rows = conn.execute(
        "SELECT c.relname, c.reltuples::bigint, pg_size_pretty(pg_total_relation_size(c.oid))"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relkind = 'r' ORDER BY c.relname",
        (schema,),
    ).fetchall()
    return [(str(r[0]), int(r[1]), str(r[2])) for r in rows]


# --- 2. history queries --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Timed:
    label: str
    query: HistoryQuery
    ms: float
    total: int


def _search_terms(conn: psycopg.Connection[Any], schema: str, sequences: list[str]) -> list[str]:
    """Names, phone digits (bare and formatted), e-mail and id fragments of contacts that
    appear in the busiest sequences' histories, plus a few that match nothing."""
    rows = conn.execute(
        sql.SQL(
            "SELECT c.contact_id, c.name, c.phone, c.email FROM {s}.contacts c"
            " WHERE c.contact_id IN (SELECT k.contact_id FROM {s}.history h"
            " JOIN {s}.contact_keys k ON k.key = h.contact_key"
            " JOIN {s}.sequence_keys q ON q.key = h.sequence_key"
            " WHERE q.sequence_id = ANY(%s) LIMIT 2000)"
            " ORDER BY c.contact_id LIMIT 200"
        ).format(s=sql.Identifier(schema)),
        (sequences,),
    ).fetchall()
    terms: list[str] = []
    for contact_id, name, phone, email in rows:
        if name:
            terms.append(name.split()[0])  # a first name: many matches
            terms.append(name)
        if phone:
            digits = "".join(ch for ch in phone if ch.isdigit())
            terms.append(digits[-10:])
            terms.append(f"({digits[-10:-7]}) {digits[-7:-4]}-{digits[-4:]}")
            terms.append(digits[-7:-4])  # a short digit run: many matches
        if email:
            terms.append(email.split("@")[0])
        terms.append(contact_id)
    return [*terms, "zzz-no-such-contact", "0000000000"]


def build_queries(
    conn: psycopg.Connection[Any], schema: str, count: int, seed: int, busiest: int
) -> tuple[list[tuple[str, HistoryQuery]], list[tuple[str, int]], datetime]:
    top = conn.execute(
        sql.SQL(
            "SELECT q.sequence_id, sum(d.row_count) FROM {s}.history_days d"
            " JOIN {s}.sequence_keys q ON q.key = d.sequence_key"
            " GROUP BY q.sequence_id ORDER BY sum(d.row_count) DESC, q.sequence_id LIMIT %s"
        ).format(s=sql.Identifier(schema)),
        (busiest,),
    ).fetchall()
    sequences = [(str(r[0]), int(r[1])) for r in top]
    found = conn.execute(
        sql.SQL("SELECT max(latest_time) FROM {s}.projection_position").format(
            s=sql.Identifier(schema)
        )
    ).fetchone()
    assert found is not None
    assert found[0] is not None
    now: datetime = found[0]
    ids = [s for s, _ in sequences]
    terms = _search_terms(conn, schema, ids)
    rng = random.Random(seed)
    kinds: list[str | None] = [None, None, *EVENT_KINDS, "step.executed", "sms.send"]
    queries: list[tuple[str, HistoryQuery]] = []
    for i in range(count):
        shape = i % 4  # plain / kind / search / search+kind, each with a timeframe
        kind = rng.choice(kinds) if shape in (1, 3) else None
        search = rng.choice(terms) if shape in (2, 3) else None
        timeframe = rng.choice(TIMEFRAMES)
        offset = rng.choice([0, 0, 0, 50, 100, 500, 2000])
        label = "+".join(
            part
            for part in (
                "search" if search else "",
                "kind" if kind else "",
                timeframe,
                "offset" if offset else "",
            )
            if part
        )
        queries.append(
            (
                label,
                HistoryQuery(
                    sequence_id=rng.choice(ids),
                    search=search,
                    kind=kind,
                    timeframe=timeframe,
                    now=now,
                    limit=50,
                    offset=offset,
                ),
            )
        )
    return queries, sequences, now


def run_queries(
    projection: PostgresProjection, queries: list[tuple[str, HistoryQuery]]
) -> list[Timed]:
    for _, query in queries[:5]:  # warm the cache and the connection
        projection.history(query)
    timed: list[Timed] = []
    for label, query in queries:
        started = time.perf_counter()
        page = projection.history(query)
        ms = (time.perf_counter() - started) * 1000
        timed.append(Timed(label, query, ms, page.total if page else -1))
    return timed


def verify(path: Path, projection: PostgresProjection, timed: list[Timed]) -> int:
    """How many answers differ from the in-memory report's over the same file."""
    report = HistoryReport()
    load_into(path, report)
    return sum(projection.history(t.query) != report.query(t.query) for t in timed)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


@contextmanager
def statements_of(conn: psycopg.Connection[Any]) -> Iterator[list[tuple[Any, Any]]]:
    """The statements (and parameters) `conn.execute` runs inside the block."""
    seen: list[tuple[Any, Any]] = []
    execute = conn.execute

    def recording(query: Any, params: Any = None, **options: Any) -> Any:
        seen.append((query, params))
        return execute(query, params, **options)

    conn.execute = recording  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        del conn.execute  # the class's method again


def explain(
    conn: psycopg.Connection[Any], projection: PostgresProjection, query: HistoryQuery
) -> list[tuple[str, list[str]]]:
    """EXPLAIN ANALYZE of each statement `history` runs for `query`."""
    with statements_of(conn) as statements:
        projection.history(query)
    plans = []
    for statement, params in statements:
        text = statement if isinstance(statement, sql.Composable) else sql.SQL(statement)
        rows = conn.execute(sql.SQL("EXPLAIN (ANALYZE, BUFFERS) ") + text, params).fetchall()
        plans.append((text.as_string(conn), [str(r[0]) for r in rows]))
    return plans


# --- report --------------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _describe(q: HistoryQuery) -> str:
    return orjson.dumps(
        {
            "sequence_id": q.sequence_id,
            "search": q.search,
            "kind": q.kind,
            "timeframe": q.timeframe,
            "offset": q.offset,
        }
    ).decode()


def _load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="output events to load")
    parser.add_argument("--workers", type=int, choices=(1, 2), default=2)
    parser.add_argument(
        "--apply", action="store_true", help="also time the incremental path (apply in batches)"
    )
    parser.add_argument("--batch-size", type=int, default=REBUILD_BATCH)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--busiest", type=int, default=5, help="query the N busiest sequences")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--verify", action="store_true", help="compare with the in-memory report")
    parser.add_argument("--history", type=Path, default=HISTORY, help="history file prefix")
    parser.add_argument(
        "--database-url", default=os.environ.get("DATABASE_URL", DEFAULT_URL), metavar="URL"
    )
    parser.add_argument("--keep-database", action="store_true", help="do not DROP it at the end")
    args = parser.parse_args(argv)
    if args.events <= 0 or args.batch_size <= 0 or args.queries <= 0:
        parser.error("--events, --batch-size and --queries must be positive")

    OUT.mkdir(parents=True, exist_ok=True)
    if args.history == HISTORY and not HISTORY.with_suffix(".events.jsonl").exists():
        # The default history is bench_replay's; a fresh clone has none yet.
        print(f"generating {HISTORY.name} (about 15 s) ...", file=sys.stderr, flush=True)
        write_history(HistorySpec(), OUT, HISTORY.name)
    stream, produced = output_stream(args.events, args.history)
    print(f"output stream: {stream.relative_to(ROOT)} {produced}", file=sys.stderr)

    schema = DEFAULT_SCHEMA
    name, url = create_database(args.database_url)
    print(f"database: {name}", file=sys.stderr)
    load_before = _load()
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            applied = None
            if args.apply:
                applied = measure_apply(
                    PostgresProjection(conn, schema="incremental"), stream, args.batch_size
                )
                print(f"apply: {applied}", file=sys.stderr)
            projection = PostgresProjection(conn, schema=schema)
            rebuild = measure_rebuild(projection, stream, args.workers)
            load_after = _load()
            print(f"rebuild: {rebuild}", file=sys.stderr)
            sizes = table_sizes(conn, schema)
            queries, busiest, now = build_queries(
                conn, schema, args.queries, args.seed, args.busiest
            )
            timed = run_queries(projection, queries)
            load_queries = _load()
            slowest = max(timed, key=lambda t: t.ms)
            plans = explain(conn, projection, slowest.query)
            different = verify(stream, projection, timed) if args.verify else None
    finally:
        if not args.keep_database:
            drop_database(args.database_url, name)

    ms = [t.ms for t in timed]
    print(f"# Read models in PostgreSQL: {args.events:,} output events\n")
    print(
        f"{os.cpu_count()} CPUs; load average (1/5/15 min) before the rebuild {load_before},"
        f" after it {load_after}, after the queries {load_queries}.\n"
    )
    if not produced["reused"]:
        print(
            f"Output stream produced: {produced['inputs_read']:,} input lines ->"
            f" {produced['outputs']:,} outputs in {produced['seconds']:.1f} s.\n"
        )
    print("## Rebuild\n")
    print(
        _table(
            ["events", "workers", "wall s", "CPU s (client)", "events/s", "target", "met"],
            [
                [
                    f"{rebuild['records']:,}",
                    str(args.workers),
                    f"{rebuild['seconds']:.1f}",
                    f"{rebuild['cpu']:.1f}",
                    f"{rebuild['rate']:,.0f}",
                    ">= 50,000/s",
                    "yes" if rebuild["rate"] >= 50_000 else "no",
                ]
            ],
        )
    )
    print()
    print(_table(["step", "s"], [[k, f"{v:.2f}"] for k, v in rebuild["steps"].items()]))
    if applied is not None:
        print(
            f"\nIncremental `apply` of the same stream in batches of {args.batch_size}:"
            f" {applied['seconds']:.1f} s, {applied['rate']:,.0f} events/s."
        )
    print()
    print(_table(["table", "rows (est.)", "size"], [[t, f"{n:,}", s] for t, n, s in sizes]))
    print("\n## History queries\n")
    print(
        f"{len(timed)} queries, limit 50, now = {now.isoformat()}, over the"
        f" {len(busiest)} busiest sequences ("
        + ", ".join(f"{s}: {n:,} rows" for s, n in busiest)
        + ")."
        + (
            ""
            if different is None
            else f" Answers different from the in-memory report: {different}."
        )
        + "\n"
    )
    p50, p95, p99 = (percentile(ms, p) for p in (50, 95, 99))
    print(
        _table(
            ["p50 ms", "p95 ms", "p99 ms", "max ms", "target", "met"],
            [
                [
                    f"{p50:.1f}",
                    f"{p95:.1f}",
                    f"{p99:.1f}",
                    f"{max(ms):.1f}",
                    "p95 < 50 ms",
                    "yes" if p95 < 50 else "no",
                ]
            ],
        )
    )
    print()
    groups: dict[str, list[float]] = {}
    for t in timed:
        shape = ("search" if t.query.search else "") + ("+kind" if t.query.kind else "")
        groups.setdefault(shape or "plain", []).append(t.ms)
    print(
        _table(
            ["shape", "n", "p50 ms", "p95 ms", "max ms"],
            [
                [
                    g,
                    str(len(v)),
                    f"{percentile(v, 50):.1f}",
                    f"{percentile(v, 95):.1f}",
                    f"{max(v):.1f}",
                ]
                for g, v in sorted(groups.items())
            ],
        )
    )
    print("\nSlowest queries:\n")
    print(
        _table(
            ["ms", "total", "query"],
            [
                [f"{t.ms:.1f}", f"{t.total:,}", f"`{_describe(t.query)}`"]
                for t in sorted(timed, key=lambda t: -t.ms)[:5]
            ],
        )
    )
    print(f"\n### EXPLAIN ANALYZE of the statements of the slowest ({slowest.ms:.1f} ms)\n")
    for text, plan in plans:
        print("```\n" + " ".join(text.split()) + "\n\n" + "\n".join(plan) + "\n```\n")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
