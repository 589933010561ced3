"""`dripstream demo`: one day of a bundled account through the whole pipeline, in this process.

The embedded runner decides, the effect processor carries the commands out against in-memory
fake providers (twice, to show the ledger sends nothing again), and the read models are
built from the decisions. No broker, no database, no network. The fake Twilio refuses texts
to one number of the bundled day (a landline) so that a failed outcome shows too.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from effects.commands import EFFECT_TYPES, effect_id_of
from effects.fakes.senders import FakeSenders, FakeSmsSender
from effects.fakes.twilio_server import DEMO_LANDLINE_NUMBER
from effects.ledger_memory import InMemoryLedger
from effects.ports import Rejected, SendResult
from effects.processor import EffectProcessor
from ops.cli_groups import SubParsers
from ops.cli_time import moment
from ops.json_out import write_json
from ops.readmodel_cli import _history_text, sequences_text
from ops.text_table import table
from projections.definition_words import counted
from projections.history import HistoryPage, HistoryQuery, HistoryReport
from projections.sequences_list import SequenceRow, SequencesList
from schemas.definitions import DefinitionRejected, account_with_defaults, load_definition_file
from schemas.envelope import CloudEvent, format_time, parse_time
from streams.embedded import RejectedLine, ReplayStats, replay

PROG = "dripstream"
DEMO_DIR = Path(__file__).parent / "demo"
BUNDLED_SEQUENCES = DEMO_DIR / "sequences.yaml"
BUNDLED_EVENTS = DEMO_DIR / "events.jsonl"
HISTORY_ROWS = 15
TEXT_WIDTH = 60
EFFECT_HEADERS = ("TIME", "CHANNEL", "TO", "TEXT", "EFFECT ID", "OUTCOME")
OUTPUT_FILES = ("decisions.jsonl", "outcomes.jsonl", "rejected.jsonl")
BAD_LINES_SAID = 20  # on stderr, of the events given; the report lists them all

# The fake Twilio plays a landline for this number, so the demo shows a refused text too.
LANDLINE = DEMO_LANDLINE_NUMBER


def register(commands: SubParsers) -> None:
    parser = commands.add_parser(
        "demo",
        help="run a bundled day of events through the engine, fake providers and read models",
        description="Replay a day of input events (bundled: a solar installer's Tuesday in New "
        "York) with the embedded runner, carry the effect commands out with in-memory fake "
        "providers (twice: the second pass must send nothing), build the Sequences page and "
        "the History report, and print them. No broker, database or network is used. The "
        "bundled input holds two bad lines on purpose: they are reported and the exit status "
        "stays 0. With your own --events, rejected lines make the exit status 1, as in replay.",
    )
    parser.add_argument(
        "--sequences",
        type=Path,
        metavar="FILE",
        help="sequence definitions (YAML or JSON; default: the bundled ops/demo/sequences.yaml)",
    )
    parser.add_argument(
        "--events",
        type=Path,
        metavar="FILE",
        help="input events, one CloudEvent per line (default: the bundled ops/demo/events.jsonl)",
    )
    parser.add_argument(
        "--until",
        type=moment,
        metavar="TIME",
        help="fire timers up to this RFC 3339 time (default: the end of the last event's day "
        "in the account's time zone)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="also write decisions.jsonl, outcomes.jsonl and rejected.jsonl into DIR",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON summary, not tables")
    parser.set_defaults(handler=run)


# --- the run ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    """One request a fake provider received (a ring-group text is one per member); `text` is
    the body, subject, dialer message or webhook payload, whole (the table cuts it short)."""

    time: datetime
    channel: str
    to: str
    text: str
    effect_id: str
    outcome: str

    def to_json(self) -> dict[str, Any]:
        return {
            "time": format_time(self.time),
            "channel": self.channel,
            "to": self.to,
            "text": self.text,
            "effect_id": self.effect_id,
            "outcome": self.outcome,
        }


@dataclass(slots=True)
class EffectsRun:
    commands: list[CloudEvent] = field(default_factory=list)
    outcomes: list[CloudEvent] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    again_outcomes: list[CloudEvent] = field(default_factory=list)
    again_requests: int = 0

    @property
    def identical_again(self) -> bool:
        return [e.encode() for e in self.again_outcomes] == [e.encode() for e in self.outcomes]


@dataclass(slots=True)
class DemoRun:
    sequences_path: str
    events_path: str
    defined: int  # sequences in the definition file
    bundled_events: bool  # the bundled day, whose bad lines are there on purpose
    timezone: str
    until: datetime | None  # None: no event had a time, so no clock to run timers by
    lines: int
    stats: ReplayStats
    decisions: list[CloudEvent]
    rejected: list[RejectedLine]
    effects: EffectsRun
    rows: list[SequenceRow]
    busiest: str | None
    history: HistoryPage | None


def run(args: argparse.Namespace) -> int:
    sequences_path: Path = args.sequences or BUNDLED_SEQUENCES
    events_path: Path = args.events or BUNDLED_EVENTS
    try:
        definitions = load_definition_file(sequences_path)
    except DefinitionRejected as rejected:
        _say(f"{sequences_path}: {rejected}")
        return 2
    try:
        # Line endings kept, as `replay` reads them: a dead letter holds the line's bytes.
        with events_path.open("rb") as handle:
            lines = list(handle)
    except OSError as error:
        _say(f"cannot read {events_path}: {error.strerror}")
        return 2
    demo = run_demo(
        definitions,
        lines,
        until=args.until,
        sequences_label=_label(args.sequences, BUNDLED_SEQUENCES),
        events_label=_label(args.events, BUNDLED_EVENTS),
        bundled_events=args.events is None,
    )
    if args.out is not None:
        try:
            _write_files(args.out, demo)
        except OSError as error:
            _say(f"cannot write to {args.out}: {error.strerror}")
            return 2
    if args.json:
        write_json(summary(demo, args.out), newline=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(report(demo, args.out))
    # Rejections are part of the bundled day; in someone's own input they count, as in replay
    # (and are said on stderr too, as replay says them: the report may go to a file).
    if demo.rejected and not demo.bundled_events:
        for line in demo.rejected[:BAD_LINES_SAID]:
            _say(line.message())
        if len(demo.rejected) > BAD_LINES_SAID:
            _say(f"{len(demo.rejected) - BAD_LINES_SAID} more bad line(s) not shown")
        return 1
    return 0


def _label(given: Path | None, bundled: Path) -> str:
    return f"{given}" if given is not None else f"bundled ops/demo/{bundled.name}"


def run_demo(
    definitions: dict[str, Any],
    lines: Sequence[bytes],
    *,
    until: datetime | None = None,
    sequences_label: str = "",
    events_label: str = "",
    bundled_events: bool = False,
) -> DemoRun:
    """Decide, carry out, project: the whole demo without printing anything."""
    zone_name = str(account_with_defaults(definitions.get("account"))["timezone"])
    zone = ZoneInfo(zone_name)
    end = until or _end_of_day(_last_time(lines), zone)
    decisions: list[CloudEvent] = []
    rejected: list[RejectedLine] = []
    stats = replay(definitions, lines, decisions.extend, rejected.append, until=end)
    effects = asyncio.run(carry_out([e for e in decisions if e.type in EFFECT_TYPES]))

    sequences = SequencesList()
    history = HistoryReport()
    for event in decisions:
        document = event.to_json()
        sequences.apply(document)
        history.apply(document)
    for outcome in effects.outcomes:  # what the providers refused is in the history too
        history.apply(outcome.to_json())
    rows = sequences.rows()
    busiest = _busiest(history, [row.id for row in rows])
    page = (
        history.query(HistoryQuery(sequence_id=busiest, limit=HISTORY_ROWS))
        if busiest is not None
        else None
    )
    return DemoRun(
        sequences_path=sequences_label,
        events_path=events_label,
        defined=len(definitions["sequences"]),
        bundled_events=bundled_events,
        timezone=zone_name,
        until=end,
        lines=sum(1 for line in lines if line.strip()),
        stats=stats,
        decisions=decisions,
        rejected=rejected,
        effects=effects,
        rows=rows,
        busiest=busiest,
        history=page,
    )


def _last_time(lines: Iterable[bytes]) -> datetime | None:
    """The latest `time` among the lines that have one (bad lines are judged by replay)."""
    latest: datetime | None = None
    for raw in lines:
        try:
            document = orjson.loads(raw)
            text = document.get("time") if isinstance(document, dict) else None
            moment = parse_time(text) if isinstance(text, str) else None
        except (orjson.JSONDecodeError, ValueError):
            continue
        if moment is None:
            continue
        latest = moment if latest is None or moment > latest else latest
    return latest


def _end_of_day(moment: datetime | None, zone: ZoneInfo) -> datetime | None:
    """The last second of the local day of `moment`: the demo's timers run to the day's end."""
    if moment is None:
        return None
    day = moment.astimezone(zone).date() + timedelta(days=1)
    return datetime.combine(day, time(0), zone) - timedelta(seconds=1)


def _busiest(history: HistoryReport, sequence_ids: Iterable[str]) -> str | None:
    totals = {
        sequence_id: page.total
        for sequence_id in sequence_ids
        if (page := history.query(HistoryQuery(sequence_id=sequence_id, limit=0))) is not None
    }
    if not totals:
        return None
    return min(totals, key=lambda sequence_id: (-totals[sequence_id], sequence_id))


# --- effects ----------------------------------------------------------------------------


def _landline(to: str) -> SendResult | None:
    if to == LANDLINE:
        return Rejected(f"The 'To' number {to} is not a mobile number", "21614")
    return None


class _CommandClock:
    """Outcome times are the command's own time, so the demo prints the same every run."""

    def __init__(self) -> None:
        self.now = datetime(1970, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


async def carry_out(commands: list[CloudEvent]) -> EffectsRun:
    """Every command through the processor with fake providers, then every one again."""
    fakes = FakeSenders(sms=FakeSmsSender(_landline))
    clock = _CommandClock()
    processor = EffectProcessor(ledger=InMemoryLedger(), senders=fakes.senders(), clock=clock)
    result = EffectsRun(commands=commands)
    for command in commands:  # one at a time: the fakes number their answers in order
        clock.now = command.time
        result.outcomes.extend(await processor.handle(command))
    received = _received(fakes)
    for command in commands:  # a redelivery of everything: the ledger must stop it all
        clock.now = command.time
        result.again_outcomes.extend(await processor.handle(command))
    result.again_requests = len(_received(fakes)) - len(received)
    result.requests = _requests(commands, received, result.outcomes)
    return result


def _received(fakes: FakeSenders) -> list[tuple[str, str, str]]:
    """(effect id, to, text) of everything the fake providers were asked."""
    out: list[tuple[str, str, str]] = []
    out += [(m.effect_id, m.to, m.body) for m in fakes.sms.sent]
    out += [(c.effect_id, c.to, f"({c.mode}) {c.message}") for c in fakes.calls.placed]
    out += [(v.effect_id, v.to, v.recording_url) for v in fakes.voicemail.dropped]
    out += [(m.effect_id, ", ".join(m.to), m.subject) for m in fakes.email.sent]
    out += [(h.effect_id, h.url, orjson.dumps(h.payload).decode()) for h in fakes.webhooks.posted]
    return out


def _requests(
    commands: list[CloudEvent], received: list[tuple[str, str, str]], outcomes: list[CloudEvent]
) -> list[Request]:
    """One row per request, in the order the engine decided the commands."""
    by_effect: dict[str, list[tuple[str, str]]] = {}
    for effect_id, to, text in received:
        by_effect.setdefault(effect_id, []).append((to, text))
    outcome_of = _outcome_texts(outcomes)
    rows: list[Request] = []
    for command in commands:
        effect_id = effect_id_of(command)
        got = by_effect.get(effect_id) or [_bookkeeping(command)]
        rows.extend(
            Request(
                time=command.time,
                channel=command.type,
                to=to,
                text=text,
                effect_id=effect_id,
                outcome=outcome_of.get(effect_id, "-"),
            )
            for to, text in got
        )
    return rows


def _bookkeeping(command: CloudEvent) -> tuple[str, str]:
    """A command no fake provider saw: a power-dialer list change, or one refused unsent."""
    data = command.data
    contact = str(data.get("contact_id") or "")
    if command.type == "power_dialer.added":
        return str(data.get("user_id")), f"add {contact} to the power-dialer list"
    if command.type == "power_dialer.removed":
        who = "every list" if data.get("all_users") else f"{data.get('user_id')}'s list"
        return ("all users" if data.get("all_users") else str(data.get("user_id"))), (
            f"remove {contact} from {who}"
        )
    return str(data.get("to") or "-"), "(not sent)"


def _outcome_texts(outcomes: list[CloudEvent]) -> dict[str, str]:
    texts: dict[str, str] = {}
    for event in outcomes:
        effect_id = str(event.data.get("effect_id", ""))
        if event.type == "effect.sent":
            texts[effect_id] = "sent"
        elif event.type == "effect.failed":
            code = event.data.get("code")
            texts[effect_id] = f"failed {code}" if code else "failed"
        elif event.type == "effect.unknown":
            texts[effect_id] = "unknown"
    return texts


def _one_line(text: str) -> str:
    return " ".join(text.split())


# --- output -------------------------------------------------------------------------------


def _say(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


def _local(moment: datetime, zone: str) -> str:
    return moment.astimezone(ZoneInfo(zone)).strftime("%H:%M")


def _heading(text: str) -> str:
    return f"\n{text}\n{'=' * len(text)}\n"


def report(demo: DemoRun, out: Path | None) -> str:
    effects = demo.effects
    parts = [
        f"{PROG} demo: one day through the engine, the effect processors and the read models,\n"
        "all in this process (embedded runner, in-memory ledger, fake providers; no broker,\n"
        "no database, no network)\n",
        f"\nSequences  {demo.sequences_path}: {counted(demo.defined, 'sequence')}\n",
        f"Input      {demo.events_path}: {counted(demo.lines, 'line')}, "
        f"{counted(demo.stats.inputs, 'event')} replayed, {len(demo.rejected)} rejected\n",
        f"Engine     {counted(len(demo.decisions), 'output event')}; {_timers(demo)}; "
        f"{counted(demo.stats.active_enrollments, 'enrollment')} still active\n",
    ]
    if demo.stats.beyond_until:
        beyond = counted(demo.stats.beyond_until, "event")
        parts.append(f"           {beyond} after that not replayed\n")
    parts.append(_heading(f"Sequences ({PROG} sequences list)") + sequences_text(demo.rows))
    if demo.busiest is not None and demo.history is not None:
        parts.append(
            _heading(
                f"History of {demo.busiest}, the busiest sequence: the latest {HISTORY_ROWS} "
                f"rows ({PROG} history {demo.busiest})"
            )
            + _history_text(demo.history)
        )
    parts.append(_heading("What would have been sent (the fake providers' inbox)"))
    parts.append(
        table(
            EFFECT_HEADERS,
            [
                [
                    _local(r.time, demo.timezone),
                    r.channel,
                    r.to,
                    _one_line(r.text)[:TEXT_WIDTH],
                    r.effect_id,
                    r.outcome,
                ]
                for r in effects.requests
            ],
        )
    )
    parts.append(_effects_totals(effects))
    parts.append(_heading("Rejected input lines"))
    if demo.rejected:
        parts.append(
            "These lines are not valid input events. The bundled day has them on purpose: a\n"
            "rejected line is reported with its line number and reason, the run goes on.\n"
            if demo.bundled_events
            else "These lines are not valid input events: each is reported with its line "
            "number and\nreason, the run went on, and the exit status is 1.\n"
        )
        parts.extend(f"  {line.message()}\n" for line in demo.rejected)
    else:
        parts.append("None: every input line was a valid event.\n")
    parts.append(_next_steps(demo, out))
    return "".join(parts)


def _timers(demo: DemoRun) -> str:
    if demo.until is None:
        return "no timers fired (no input event had a time)"
    local = demo.until.astimezone(ZoneInfo(demo.timezone)).isoformat()
    return f"timers fired up to {local} ({demo.timezone})"


def _effects_totals(effects: EffectsRun) -> str:
    if not effects.commands:
        return "\nNo effect commands: nothing to send.\n"
    outcome_counts = Counter(event.type for event in effects.outcomes)
    channels = Counter(request.channel for request in effects.requests)
    same = "the same ids and bytes" if effects.identical_again else "BUT THEY DIFFER"
    return (
        f"\n{len(effects.requests)} requests from {len(effects.commands)} effect commands: "
        + ", ".join(f"{n} {kind}" for kind, n in sorted(channels.items()))
        + "\nOutcomes: "
        + ", ".join(f"{n} {kind}" for kind, n in sorted(outcome_counts.items()))
        + f"\nExactly once: the same {len(effects.commands)} commands delivered a second time "
        f"made {effects.again_requests} new provider requests; the ledger answered with "
        f"{len(effects.again_outcomes)} recorded outcomes ({same}).\n"
    )


def _next_steps(demo: DemoRun, out: Path | None) -> str:
    if out is None:
        return (
            "\nAdd --out DIR to keep decisions.jsonl, outcomes.jsonl and rejected.jsonl and "
            "explore them\nwith `dripstream sequences list` and `dripstream history`.\n"
        )
    decisions, outcomes = out / "decisions.jsonl", out / "outcomes.jsonl"
    counts = (len(demo.decisions), len(demo.effects.outcomes), len(demo.rejected))
    written = ", ".join(f"{name} ({n})" for name, n in zip(OUTPUT_FILES, counts, strict=True))
    history = (
        f"{PROG} history {demo.busiest} --history {decisions} --history {outcomes}"
        if demo.busiest
        else ""
    )
    commands = [f"{PROG} sequences list --history {decisions}", history]
    return f"\nWritten to {out}: {written}\nLook further:\n" + "".join(
        f"  {command}\n" for command in commands if command
    )


def _write_files(out: Path, demo: DemoRun) -> None:
    out.mkdir(parents=True, exist_ok=True)
    contents = (
        b"".join(event.encode() + b"\n" for event in demo.decisions),
        b"".join(event.encode() + b"\n" for event in demo.effects.outcomes),
        b"".join(line.dead_letter() + b"\n" for line in demo.rejected),
    )
    for name, content in zip(OUTPUT_FILES, contents, strict=True):
        (out / name).write_bytes(content)


def summary(demo: DemoRun, out: Path | None) -> dict[str, Any]:
    effects = demo.effects
    return {
        "sequences_file": demo.sequences_path,
        "events_file": demo.events_path,
        "timezone": demo.timezone,
        "until": None if demo.until is None else format_time(demo.until),
        "input": {
            "bundled": demo.bundled_events,
            "lines": demo.lines,
            "replayed": demo.stats.inputs,
            "rejected": len(demo.rejected),
            "beyond_until": demo.stats.beyond_until,
        },
        "decisions": {
            "total": len(demo.decisions),
            "by_type": dict(sorted(Counter(e.type for e in demo.decisions).items())),
            "active_enrollments": demo.stats.active_enrollments,
        },
        "sequences": [row.to_json() for row in demo.rows],
        "history": None
        if demo.history is None
        else {"sequence_id": demo.busiest, **demo.history.to_json()},
        "effects": {
            "commands": len(effects.commands),
            "requests": [request.to_json() for request in effects.requests],
            "outcomes": dict(sorted(Counter(e.type for e in effects.outcomes).items())),
            "second_pass": {
                "new_requests": effects.again_requests,
                "outcomes": len(effects.again_outcomes),
                "identical": effects.identical_again,
            },
        },
        "rejected": [
            {"line": line.line, "field": line.field, "reason": line.reason}
            for line in demo.rejected
        ],
        "out": None
        if out is None
        else {"dir": str(out), "files": [str(out / name) for name in OUTPUT_FILES]},
    }
