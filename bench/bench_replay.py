"""The replay benchmark (issue 3): how fast `streams.embedded.replay` folds a history, and
how its memory grows, measured against the floor of bare JSON parsing and of decoding.

    .venv/bin/python -m bench.bench_replay                    # 1M events, sizes 250k/500k/1M
    .venv/bin/python -m bench.bench_replay --events 100000    # a quick run

Each measurement runs in a fresh interpreter, so that one peak RSS never includes another's.
The history is generated into bench/out/ (ignored by git) when it is not there yet; the
replay at a smaller size reads a prefix of the same file (the same account and traffic, a
shorter history).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import hashlib
import io
import itertools
import json
import os
import platform
import pstats
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from aggregates.engine import Engine
from bench.generate_history import DEFAULT_OUT, HistoryFiles, HistorySpec, write_history
from schemas.definitions import load_definition_file
from schemas.validation import EventRejected, decode_event
from streams import embedded
from streams.embedded import RejectedLine, replay

ROOT = Path(__file__).resolve().parent.parent
TARGET_EVENTS_PER_SECOND = 50_000
PROFILE_TOP = 15
WRITE_CHUNK = 4096  # output events per write, as `dripstream replay` does
MB = 1024 * 1024
# Where a replay's time goes, as cumulative shares of the profile: (file suffix, function).
BREAKDOWN = {
    "decode (streams.embedded.decode_input)": ("streams/embedded.py", "decode_input"),
    "engine: inputs and due timers (Engine.handle)": ("aggregates/engine.py", "handle"),
    "engine: of which timers firing (Engine._fire_until)": (
        "aggregates/engine_core.py",
        "_fire_until",
    ),
    "engine: of which calendar (adjust_due)": ("aggregates/calendar.py", "adjust_due"),
    "engine: of which contact zone (contact_zone)": ("aggregates/timezones.py", "contact_zone"),
    "engine: of which CloudEvent building (Outputs.add)": ("aggregates/outputs.py", "add"),
    "engine: timers at the end (Engine.advance)": ("aggregates/engine.py", "advance"),
    "output: encode + write (the sink)": ("bench/bench_replay.py", "sink"),
    "output: of which CloudEvent.encode": ("schemas/envelope.py", "encode"),
    "format_time (everywhere)": ("schemas/envelope.py", "format_time"),
    "dataclasses.replace (everywhere)": ("dataclasses.py", "replace"),
}


# ---- measurements (each in its own child process) -------------------------------------------


def _peak_rss_bytes() -> int:
    # ru_maxrss is in kilobytes on Linux (bytes on macOS).
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _lines(path: Path, limit: int | None) -> Iterator[bytes]:
    with path.open("rb") as handle:
        yield from itertools.islice(handle, limit)


def _timed(result: dict[str, Any], started: float, cpu_started: float) -> dict[str, Any]:
    result["wall_s"] = time.perf_counter() - started
    result["cpu_s"] = _cpu_seconds() - cpu_started
    result["peak_rss_bytes"] = _peak_rss_bytes()
    return result


def measure_floor(events: Path, limit: int | None) -> dict[str, Any]:
    """Bare `orjson.loads` of every line: the most any replay in Python could do."""
    baseline = _peak_rss_bytes()
    count = bad = 0
    started, cpu_started = time.perf_counter(), _cpu_seconds()
    for line in _lines(events, limit):
        count += 1
        try:
            orjson.loads(line)
        except orjson.JSONDecodeError:
            bad += 1
    return _timed(
        {"lines": count, "bad": bad, "baseline_rss_bytes": baseline}, started, cpu_started
    )


def measure_decode(events: Path, limit: int | None) -> dict[str, Any]:
    """`decode_event` of every line: parse, envelope and data schema, upcast."""
    baseline = _peak_rss_bytes()
    count = bad = 0
    started, cpu_started = time.perf_counter(), _cpu_seconds()
    for line in _lines(events, limit):
        count += 1
        try:
            decode_event(line)
        except EventRejected:
            bad += 1
    return _timed(
        {"lines": count, "bad": bad, "baseline_rss_bytes": baseline}, started, cpu_started
    )


class _Capture:
    """Keeps the engine a replay builds, to report the sizes of its state afterwards."""

    engine: Any = None


def _capture_engine() -> None:
    # Only this child process is patched: `replay` builds its engine through this name.
    class CapturingEngine(Engine):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            _Capture.engine = self

    embedded.Engine = CapturingEngine  # type: ignore[misc]


def _engine_sizes(engine: Any) -> dict[str, Any]:
    """Sizes of the engine's state, best effort: the engine's insides change under us."""
    if engine is None:
        return {}
    try:
        sizes: dict[str, Any] = engine.sizes()
    except (AttributeError, TypeError) as error:  # a revision from before Engine.sizes
        sizes = {"sizes_error": f"{type(error).__name__}: {error}"}
    return sizes


def _source_digest() -> str:
    """A digest of the code a replay runs, to see whether it changed between measurements."""
    digest = hashlib.sha256()
    for folder in ("aggregates", "schemas", "streams"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix in (".py", ".json") and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(ROOT)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _replay_once(
    sequences: Path,
    events: Path,
    limit: int | None,
    out: Path,
    profiler: cProfile.Profile | None = None,
) -> dict[str, Any]:
    definitions = load_definition_file(sequences)
    gc.collect()
    baseline = _peak_rss_bytes()
    rejected: list[int] = []
    written = [0]
    buffer: list[bytes] = []

    with out.open("wb") as sink_file:

        def flush() -> None:
            if buffer:
                data = b"\n".join(buffer) + b"\n"
                written[0] += len(data)
                sink_file.write(data)
                buffer.clear()

        def sink(batch: list[Any]) -> None:
            buffer.extend(event.encode() for event in batch)
            if len(buffer) >= WRITE_CHUNK:
                flush()

        def on_rejected(line: RejectedLine) -> None:
            rejected.append(line.line)

        started, cpu_started = time.perf_counter(), _cpu_seconds()
        if profiler is not None:
            profiler.enable()
        stats = replay(definitions, _lines(events, limit), sink, on_rejected)
        flush()
        if profiler is not None:
            profiler.disable()
        result = _timed({}, started, cpu_started)
    result.update(
        baseline_rss_bytes=baseline,
        inputs=stats.inputs,
        outputs=stats.outputs,
        rejected=stats.rejected,
        active_enrollments=stats.active_enrollments,
        output_bytes=written[0],
        first_rejected_lines=rejected[:5],
    )
    return result


def measure_replay(sequences: Path, events: Path, limit: int | None, out: Path) -> dict[str, Any]:
    """The full replay, every output event encoded and written to `out`."""
    _capture_engine()
    result = _replay_once(sequences, events, limit, out)
    result.update(_engine_sizes(_Capture.engine))
    return result


def measure_profile(
    sequences: Path, events: Path, limit: int | None, out: Path, prof: Path
) -> dict[str, Any]:
    """The full replay under cProfile; the top functions by own time (tottime)."""
    profiler = cProfile.Profile()
    result = _replay_once(sequences, events, limit, out, profiler)
    profiler.dump_stats(prof)
    stats = pstats.Stats(profiler, stream=io.StringIO())
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values())
    rows = sorted(raw.items(), key=lambda item: item[1][2], reverse=True)[:PROFILE_TOP]
    result["profile_total_s"] = total
    result["profile_breakdown"] = {
        label: max(
            (
                entry[3]
                for (file, _, name), entry in raw.items()
                if file.endswith(where) and name == function
            ),
            default=0.0,
        )
        / total
        for label, (where, function) in BREAKDOWN.items()
    }
    result["profile_top"] = [
        {
            "function": _where(file, line, name),
            "ncalls": calls,
            "tottime_s": own,
            "share": own / total if total else 0.0,
            "cumtime_s": cumulative,
        }
        for (file, line, name), (_, calls, own, cumulative, _) in rows
    ]
    return result


def _where(file: str, line: int, name: str) -> str:
    if file == "~":  # a builtin
        return name
    path = Path(file)
    for base in (ROOT, *(Path(p) for p in sys.path if "site-packages" in p)):
        try:
            return f"{path.relative_to(base)}:{line}({name})"
        except ValueError:
            continue
    return f"{path.name}:{line}({name})"


def _child(args: argparse.Namespace) -> int:
    source = _source_digest()
    events, limit = Path(args.events_file), args.limit or None
    if args.measure == "floor":
        result = measure_floor(events, limit)
    elif args.measure == "decode":
        result = measure_decode(events, limit)
    elif args.measure == "replay":
        result = measure_replay(Path(args.sequences_file), events, limit, Path(args.output))
    else:
        result = measure_profile(
            Path(args.sequences_file), events, limit, Path(args.output), Path(args.prof)
        )
    result["source_digest"] = source
    result["code_root"] = str(Path(embedded.__file__).resolve().parent.parent)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


# ---- the run --------------------------------------------------------------------------------


def _snapshot(revision: str, into: Path) -> Path:
    """The engine's code at `revision` plus this bench/, to measure one fixed version while
    others edit the working tree (read-only git: `git archive`)."""
    archive = subprocess.run(
        ["git", "archive", revision, "aggregates", "schemas", "streams"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    ignore = shutil.ignore_patterns("out", "__pycache__")
    shutil.copytree(Path(__file__).resolve().parent, into / "bench", ignore=ignore)
    return into


def _run_child(
    kind: str, files: HistoryFiles, limit: int, code: Path = ROOT, **extra: str
) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "bench.bench_replay",
        "--measure",
        kind,
        "--events-file",
        str(files.events),
        "--sequences-file",
        str(files.sequences),
        "--limit",
        str(limit),
    ]
    for key, value in extra.items():
        command += [f"--{key}", value]
    print(f"  {kind} over {limit:,} lines ...", file=sys.stderr, flush=True)
    # `-m` puts the working directory first on sys.path: it decides which code is measured.
    environment = {**os.environ, "PYTHONPATH": str(code)}
    done = subprocess.run(
        command, cwd=code, env=environment, capture_output=True, text=True, check=False
    )
    if done.returncode != 0 or not done.stdout.strip():
        # One failed measurement must not cost the others (a long run is an hour).
        print(done.stderr, file=sys.stderr)
        return {"kind": kind, "limit": limit, "error": done.stderr.strip().splitlines()[-1:]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["kind"], result["limit"] = kind, limit
    return result


def _history(spec: HistorySpec, out_dir: Path) -> tuple[HistoryFiles, dict[str, Any]]:
    name = spec.name()
    files = HistoryFiles(
        sequences=out_dir / f"{name}.sequences.json",
        events=out_dir / f"{name}.events.jsonl",
        summary=out_dir / f"{name}.summary.json",
    )
    if not (files.sequences.exists() and files.events.exists() and files.summary.exists()):
        print(f"generating {files.events} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        files = write_history(spec, out_dir, name)
        print(f"  took {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return files, orjson.loads(files.summary.read_bytes())


def _machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "python": platform.python_version(),
        "orjson": orjson.__version__,
        "platform": platform.platform(),
        "git_head": _git("rev-parse", "--short", "HEAD"),
        "git_dirty": _git("status", "--porcelain", "--", "aggregates", "schemas", "streams"),
    }


def _git(*args: str) -> str:
    # Read-only queries, to say which code the numbers belong to.
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return " ".join(done.stdout.split()) if done.returncode == 0 else "unknown"


def _rate(count: float, seconds: float) -> str:
    return f"{count / seconds:,.0f}" if seconds > 0 else "-"


def _mb(value: float) -> str:
    return f"{value / MB:,.0f}"


def _table(header: list[str], rows: Iterable[list[str]]) -> str:
    # The first column is a label (left), the rest are numbers (right).
    lines = ["| " + " | ".join(header) + " |", "|---|" + "|".join("---:" for _ in header[1:]) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _per_100k(extra_bytes: float, active: int) -> str:
    return f"{extra_bytes / MB / active * 100_000:,.1f}" if active else "-"


SPEED_HEADER = [
    "step",
    "lines",
    "wall s",
    "CPU s",
    "in events/s (wall)",
    "in events/s (CPU)",
    "out events",
    "out events/s (wall)",
    "peak RSS MB",
    "code",
]
MEMORY_HEADER = [
    "events",
    "contacts",
    "active enrollments",
    "enrollments ever",
    "(sequence, contact) pairs ever",
    "timers in heap (live)",
    "in events/s (wall)",
    "peak RSS MB",
    "over baseline MB",
    "MB / 100k active",
]


def _speed_row(label: str, r: dict[str, Any]) -> list[str]:
    count = r.get("inputs", r.get("lines", 0))
    outputs = r.get("outputs")
    return [
        label,
        f"{r['limit']:,}",
        f"{r['wall_s']:.1f}",
        f"{r['cpu_s']:.1f}",
        _rate(count, r["wall_s"]),
        _rate(count, r["cpu_s"]),
        "-" if outputs is None else f"{outputs:,}",
        "-" if outputs is None else _rate(outputs, r["wall_s"]),
        _mb(r["peak_rss_bytes"]),
        r.get("source_digest", "?")[:7],
    ]


def _memory_row(r: dict[str, Any]) -> list[str]:
    extra = r["peak_rss_bytes"] - r["baseline_rss_bytes"]
    return [
        f"{r['limit']:,}",
        f"{r.get('contacts', 0):,}",
        f"{r['active_enrollments']:,}",
        f"{r.get('enrollments_ever', 0):,}",
        f"{r.get('enrollment_pairs_ever', 0):,}",
        f"{r.get('timers_in_heap', 0):,} ({r.get('timers_live', 0):,})",
        _rate(r["inputs"], r["wall_s"]),
        _mb(r["peak_rss_bytes"]),
        _mb(extra),
        _per_100k(extra, r["active_enrollments"]),
    ]


def _profile_row(row: dict[str, Any]) -> list[str]:
    return [
        f"`{row['function']}`",
        f"{row['ncalls']:,}",
        f"{row['tottime_s']:.2f}",
        f"{row['share']:.1%}",
        f"{row['cumtime_s']:.2f}",
    ]


def report(
    machine: dict[str, str], summary: dict[str, Any], everything: list[dict[str, Any]]
) -> str:
    """The results as Markdown: speed, memory against history length, profile."""
    results = [r for r in everything if "error" not in r]
    failed = [r for r in everything if "error" in r]
    digests = sorted({r.get("source_digest", "?") for r in results})
    parts = [
        f"Machine: {machine['nproc']} CPUs ({machine['cpu']}), Python {machine['python']}, "
        f"orjson {machine['orjson']}, {machine['platform']}.",
        f"History: {summary['lines']:,} lines ({summary['bad_lines']} invalid), "
        f"{summary['contacts_created']:,} contacts, {summary['spec']['sequences']} sequences, "
        f"{summary['first_time']} to {summary['last_time']}, seed {summary['spec']['seed']}.",
        f"Code: git {machine.get('git_head')}; uncommitted in aggregates/schemas/streams: "
        f"{machine.get('git_dirty') or 'none'}; source digest {', '.join(digests)}"
        + (" (CHANGED during the run: numbers are not comparable)" if len(digests) > 1 else "")
        + ".",
        "",
    ]
    parts += [f"FAILED: {r['kind']} over {r['limit']:,} lines: {r['error']}" for r in failed]
    labels = {"floor": "floor: orjson.loads", "decode": "decode_event"}
    rows = [_speed_row(labels[r["kind"]], r) for r in results if r["kind"] in labels]
    replays = [r for r in results if r["kind"] == "replay"]
    if replays:
        full = replays[-1]
        rows.append(_speed_row("full replay (encode + write)", full))
    parts.append(_table(SPEED_HEADER, rows))
    if replays:
        rate = full["inputs"] / full["wall_s"]
        parts += [
            "",
            f"Target: {TARGET_EVENTS_PER_SECOND:,} input events/s; measured {rate:,.0f} "
            f"({rate / TARGET_EVENTS_PER_SECOND:.1%} of it).",
            "",
            "Memory against history length (prefixes of the same history):",
            "",
            _table(MEMORY_HEADER, [_memory_row(r) for r in replays]),
        ]
    if len(replays) > 1:
        first, last = replays[0], replays[-1]
        d_active = last["active_enrollments"] - first["active_enrollments"]
        d_contacts = last.get("contacts", 0) - first.get("contacts", 0)
        d_rss = (last["peak_rss_bytes"] - first["peak_rss_bytes"]) / MB
        parts += [
            "",
            f"From {first['limit']:,} to {last['limit']:,} events: peak RSS {d_rss:+,.0f} MB, "
            f"active enrollments {d_active:+,}, contacts {d_contacts:+,}.",
        ]
    profile = next((r for r in results if r["kind"] == "profile"), None)
    if profile:
        parts += [
            "",
            f"cProfile of the full replay over {profile['limit']:,} lines "
            f"(profiled total {profile['profile_total_s']:.1f} s), top {PROFILE_TOP} by own time:",
            "",
            _table(
                ["function", "calls", "own s", "own %", "cumulative s"],
                [_profile_row(row) for row in profile["profile_top"]],
            ),
            "",
            "Where the time goes (cumulative share of the profiled total):",
            "",
            _table(
                ["part", "share"],
                [[label, f"{share:.1%}"] for label, share in profile["profile_breakdown"].items()],
            ),
        ]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark `replay` over a synthetic history.")
    parser.add_argument(
        "--events", type=int, default=1_000_000, help="history length (default 1,000,000)"
    )
    parser.add_argument(
        "--sizes", help="replay prefixes, comma-separated (default: events/4, /2, all)"
    )
    parser.add_argument(
        "--profile-events", type=int, default=200_000, help="cProfile this many (0: skip)"
    )
    parser.add_argument("--sequences", type=int, default=100)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--bad-every", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--keep-output", action="store_true", help="keep the replays' output files (GBs at 1M)"
    )
    parser.add_argument(
        "--at",
        metavar="REVISION",
        help="measure the committed code at this git revision (e.g. HEAD), not the working tree",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="print the report of the last run's saved results",
    )
    # The child side: one measurement in a fresh interpreter.
    parser.add_argument(
        "--measure", choices=("floor", "decode", "replay", "profile"), help=argparse.SUPPRESS
    )
    parser.add_argument("--events-file", help=argparse.SUPPRESS)
    parser.add_argument("--sequences-file", help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    parser.add_argument("--prof", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        return _child(args)

    out_dir: Path = args.out_dir.resolve()
    spec = HistorySpec(args.events, args.sequences, args.contacts, args.seed, args.bad_every)
    progress = out_dir / f"results-{spec.name()}.partial.jsonl"
    if args.report_only and not progress.exists():
        # Said before any history is generated: there is nothing to report either way.
        print(f"no results for this history yet: run without --report-only ({progress})")
        return 2
    files, summary = _history(spec, out_dir)
    lines = summary["lines"]
    sizes = (
        sorted({min(int(s.replace("_", "")), lines) for s in args.sizes.split(",")})
        if args.sizes
        else sorted({max(1, lines // 4), max(1, lines // 2), lines})
    )
    if args.report_only:
        machine = orjson.loads((out_dir / f"results-{spec.name()}.machine.json").read_bytes())
        saved = [json.loads(line) for line in progress.read_text().splitlines() if line.strip()]
        print(report(machine, summary, saved))
        return 0
    machine = _machine()  # before the run: the code state the numbers start from
    if args.at:
        machine["git_head"] = _git("rev-parse", "--short", args.at)
        machine["git_dirty"] = f"none: a snapshot of {args.at} ({machine['git_head']})"
    plan: list[tuple[str, int, dict[str, str]]] = [("floor", lines, {}), ("decode", lines, {})]
    if args.profile_events:
        size = min(args.profile_events, lines)
        stem = out_dir / f"profile-{spec.name()}-{size}"
        plan.append(("profile", size, {"output": f"{stem}.out.jsonl", "prof": f"{stem}.prof"}))
    plan.extend(
        ("replay", size, {"output": str(out_dir / f"replay-{spec.name()}-{size}.out.jsonl")})
        for size in sizes
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="dripstream-bench-") as scratch:
        # The snapshot first: an `--at` that cannot be had leaves the saved results alone.
        code = _snapshot(args.at, Path(scratch)) if args.at else ROOT
        machine_file = out_dir / f"results-{spec.name()}.machine.json"
        machine_file.write_text(json.dumps(machine, indent=2))
        progress.write_text("")
        for kind, size, extra in plan:
            results.append(_run_child(kind, files, size, code, **extra))
            with progress.open("a") as handle:  # kept as it comes: a crash loses one, not all
                handle.write(json.dumps(results[-1]) + "\n")
            if "output" in extra and not args.keep_output:
                Path(extra["output"]).unlink(missing_ok=True)
    text = report(machine, summary, results)
    (out_dir / f"results-{spec.name()}.json").write_text(
        json.dumps({"machine": machine, "history": summary, "results": results}, indent=2) + "\n"
    )
    (out_dir / f"results-{spec.name()}.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
