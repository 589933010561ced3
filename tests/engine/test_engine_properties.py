"""Properties of whole replays over random sequences, zones, DST transitions and inputs.

Every contact has an explicit time zone that never changes, so the checker can say in which
zone each command had to respect the calendar.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregates.calendar import is_holiday
from schemas.envelope import format_time, parse_time
from tests.engine.helpers import Outcome, decide, definitions

ZONES = [
    "America/New_York",
    "America/Denver",
    "America/Los_Angeles",
    "America/Phoenix",
    "Europe/London",
    "Australia/Sydney",
    "Asia/Kolkata",
    "UTC",
]
# Starts near DST changes (US spring forward and fall back, Sydney's, London's) and plain days.
STARTS = [
    "2027-03-13T20:00:00Z",
    "2027-11-06T20:00:00Z",
    "2027-04-03T10:00:00Z",
    "2027-03-27T20:00:00Z",
    "2027-07-02T15:00:00Z",
    "2027-12-23T15:00:00Z",
    # the evenings before weekday holidays (Thanksgiving, Martin Luther King Jr. Day): a
    # step due the next day is moved for the holiday itself, not for a weekend first
    "2027-11-24T22:00:00Z",
    "2027-01-17T22:00:00Z",
]
VOICE_OR_TEXT = {"sms.send", "mms.send", "call.dial", "voicemail.drop", "power_dialer.added"}
CONTACT_COMMANDS = VOICE_OR_TEXT | {"email.send"}
# The command each contact-facing step kind below asks for (add_tag reaches nobody).
STEP_COMMANDS = {
    "send_sms": "sms.send",
    "email_contact": "email.send",
    "progressive_dialer": "call.dial",
    "ringless_voicemail": "voicemail.drop",
}
STEP_KINDS: dict[str, dict[str, Any]] = {
    "send_sms": {"text": "Hi [FirstName]"},
    "email_contact": {"subject": "s", "body": "b"},
    "progressive_dialer": {"ring_group": "rg-sales", "message": "press 1"},
    "ringless_voicemail": {"recording_url": "https://x/v.mp3"},
    "add_tag": {"tag": "seen"},
}

delays = st.one_of(
    st.just({"kind": "none"}),
    st.builds(
        lambda amount, unit: {"kind": "default", "amount": amount, "unit": unit},
        st.integers(0, 48),
        st.sampled_from(["minutes", "hours", "days"]),
    ),
    st.builds(
        lambda days, hour, minute: {
            "kind": "time_of_day",
            "days": days,
            "at": f"{hour:02d}:{minute:02d}",
        },
        st.integers(0, 3),
        st.integers(0, 23),
        st.sampled_from([0, 15, 30, 45]),
    ),
)
windows = st.tuples(st.integers(0, 11), st.integers(13, 23)).map(
    lambda w: (f"{w[0]:02d}:00", f"{w[1]:02d}:30")
)


@st.composite
def worlds(
    draw: st.DrawFn, most_contacts: int = 4
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, str]]:
    steps = [
        {"id": f"s{i}", "type": kind, **STEP_KINDS[kind], "delay": draw(delays)}
        for i, kind in enumerate(
            draw(st.lists(st.sampled_from(sorted(STEP_KINDS)), min_size=1, max_size=5))
        )
    ]
    open_close = draw(st.one_of(st.none(), windows))
    quiet = draw(st.one_of(st.none(), st.just(("08:00", "21:00"))))
    seq: dict[str, Any] = {
        "id": "seq",
        "name": "Random",
        "process_on": draw(st.sampled_from(["every_day", "business_days"])),
        "run_on_holidays": draw(st.booleans()),
        "outbound_line": "line-1",
        "throttle_per_minute": draw(st.one_of(st.none(), st.integers(1, 3))),
        "remove_on_response": draw(st.booleans()),
        "remove_on_opt_out": draw(st.booleans()),
        "steps": steps,
        "triggers": [{"type": "contact_tagged", "tags": ["hot"]}],
    }
    if open_close:
        seq["schedule"] = {"open": open_close[0], "close": open_close[1]}
    account: dict[str, Any] = {
        "timezone": "America/New_York",
        "opt_out_phrase": "Reply STOP to opt out.",
        "lines": {"line-1": "+12125550000"},
        "users": {"u-7": {"name": "Sam", "phone": "+12125550007"}},
        "ring_groups": {"rg-sales": ["u-7"]},
    }
    if quiet:
        account["quiet_hours"] = {"start": quiet[0], "end": quiet[1]}
    start = parse_time(draw(st.sampled_from(STARTS)))
    contacts = {
        f"c-{i}": draw(st.sampled_from(ZONES)) for i in range(draw(st.integers(1, most_contacts)))
    }
    inputs: list[dict[str, Any]] = []
    moment = start
    serial = 0

    def add(kind: str, contact: str, **data: Any) -> None:
        nonlocal serial
        serial += 1
        inputs.append(
            {
                "specversion": "1.0",
                "id": f"p-{serial}",
                "source": "prop",
                "type": kind,
                "time": format_time(moment),
                "subject": contact,
                "data": {"contact_id": contact, **data},
            }
        )

    for contact, zone in contacts.items():
        add(
            "contact.created",
            contact,
            first_name="X",
            phone="+12125550123",
            email="x@example.com",
            timezone=zone,
        )
    for _ in range(draw(st.integers(1, 12))):
        moment += timedelta(minutes=draw(st.integers(0, 36 * 60)))
        contact = draw(st.sampled_from(sorted(contacts)))
        kind = draw(st.sampled_from(["tag", "tag", "tag", "dnc_on", "dnc_off", "opt_out", "reply"]))
        if kind == "tag":
            add("contact.tag_added", contact, tag="hot")
        elif kind in ("dnc_on", "dnc_off"):
            add("contact.dnc_changed", contact, dnc=kind == "dnc_on")
        elif kind == "opt_out":
            add(
                "contact.opted_out", contact, channel=draw(st.sampled_from(["sms", "email", "all"]))
            )
        else:
            add("message.received", contact, message_id=f"m-{serial}", channel="sms", body="ok")
    until = format_time(moment + timedelta(days=draw(st.integers(0, 10))))
    return {"account": account, "sequences": [seq], "until": until}, inputs, contacts


def _replay(world: dict[str, Any], inputs: list[dict[str, Any]]) -> Outcome:
    defs = definitions(*world["sequences"], account=world["account"])
    return decide(defs, inputs, until=world["until"])


def _local(moment: str, zone: str) -> datetime:
    return parse_time(moment).astimezone(ZoneInfo(zone))


def _clock(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def _inside(local: datetime, window: tuple[str, str] | None) -> bool:
    """Whether a local moment lies in a window, reading wall times as the calendar does
    (a window edge in a DST gap is the instant the wall clock skips to)."""
    if window is None:
        return True
    zone = local.tzinfo
    assert isinstance(zone, ZoneInfo)
    day = local.date()
    start = datetime.combine(day, _clock(window[0]), zone)
    end = datetime.combine(day, _clock(window[1]), zone)
    return start <= local < end


def _state_before(inputs: list[dict[str, Any]], event: dict[str, Any]) -> list[dict[str, Any]]:
    """The inputs the engine had seen when it decided `event` (see CONTRACT.md §3 order)."""
    cause = event["id"].split("/")[0]
    if cause.startswith("t:"):
        return [i for i in inputs if parse_time(i["time"]) <= parse_time(event["time"])]
    for index, item in enumerate(inputs):
        # An input's outputs are numbered from `<id>@<source>@<time>`.
        if f"{item['id']}@{item['source']}" == cause.rsplit("@", 1)[0]:
            return inputs[: index + 1]
    raise AssertionError(f"no input {cause}")


def _blocked(seen: list[dict[str, Any]], contact: str, kind: str) -> bool:
    dnc = False
    opted: set[str] = set()
    for item in seen:
        if item["data"].get("contact_id") != contact:
            continue
        if item["type"] == "contact.dnc_changed":
            dnc = item["data"]["dnc"]
        elif item["type"] == "contact.opted_out":
            channel = item["data"]["channel"]
            opted |= {"sms", "email"} if channel == "all" else {channel}
    if dnc:
        return True
    if kind in ("sms.send", "mms.send"):
        return "sms" in opted
    if kind == "email.send":
        return "email" in opted
    return False


PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@PROPERTY_SETTINGS
@given(worlds())
def test_contact_commands_respect_hours_days_quiet_hours_and_consent(
    world_inputs: tuple[dict[str, Any], list[dict[str, Any]], dict[str, str]],
) -> None:
    world, inputs, zones = world_inputs
    out = _replay(world, inputs)
    seq = world["sequences"][0]
    schedule = seq.get("schedule")
    open_window = (schedule["open"], schedule["close"]) if schedule else None
    quiet = world["account"].get("quiet_hours")
    quiet_window = (quiet["start"], quiet["end"]) if quiet else None
    for event in out.events:
        if event["type"] not in CONTACT_COMMANDS:
            continue
        contact = event["data"]["contact_id"]
        local = _local(event["time"], zones[contact])
        assert _inside(local, open_window), (event, local)
        if event["type"] in VOICE_OR_TEXT:
            assert _inside(local, quiet_window), (event, local)
        if seq["process_on"] == "business_days":
            assert local.weekday() < 5, (event, local)
            assert seq["run_on_holidays"] or not is_holiday(local.date()), (event, local)
        assert not _blocked(_state_before(inputs, event), contact, event["type"]), event


@PROPERTY_SETTINGS
@given(worlds())
def test_no_step_runs_before_its_delay_and_deferrals_only_move_forward(
    world_inputs: tuple[dict[str, Any], list[dict[str, Any]], dict[str, str]],
) -> None:
    world, inputs, _ = world_inputs
    out = _replay(world, inputs)
    steps = {s["id"]: s for s in world["sequences"][0]["steps"]}
    anchor: dict[str, datetime] = {}
    due: dict[tuple[str, str], datetime] = {}
    for event in out.events:
        data, when = event["data"], parse_time(event["time"])
        kind = event["type"]
        if kind == "enrollment.enrolled":
            anchor[data["enrollment_id"]] = when
        elif kind == "step.scheduled":
            scheduled = parse_time(data["due_at"])
            delay = steps[data["step_id"]]["delay"]
            base = anchor[data["enrollment_id"]]
            assert scheduled >= base
            if delay["kind"] == "default":
                unit = {"minutes": 60, "hours": 3600, "days": 86400}[delay["unit"]]
                assert scheduled == base + timedelta(seconds=delay["amount"] * unit)
            due[(data["enrollment_id"], data["step_id"])] = scheduled
        elif kind == "step.deferred":
            assert parse_time(data["to"]) > parse_time(data["from"])
        elif kind in ("step.executed", "step.skipped"):
            assert when >= due[(data["enrollment_id"], data["step_id"])]
            anchor[data["enrollment_id"]] = when
    times = [parse_time(e["time"]) for e in out.events]
    assert times == sorted(times) or _only_definition_first(out)


@PROPERTY_SETTINGS
@given(worlds())
def test_the_throttle_holds_in_every_utc_minute(
    world_inputs: tuple[dict[str, Any], list[dict[str, Any]], dict[str, str]],
) -> None:
    world, inputs, _ = world_inputs
    limit = world["sequences"][0]["throttle_per_minute"]
    out = _replay(world, inputs)
    per_minute: dict[str, int] = {}
    for event in out.of("step.executed"):
        minute = event["time"][:16]
        per_minute[minute] = per_minute.get(minute, 0) + 1
    assert limit is None or max(per_minute.values(), default=0) <= limit, per_minute


@PROPERTY_SETTINGS
@given(worlds())
def test_a_step_is_deferred_at_most_once_and_runs_where_it_was_told(
    world_inputs: tuple[dict[str, Any], list[dict[str, Any]], dict[str, str]],
) -> None:
    # CONTRACT.md §3: "again until it holds still, with one step.deferred"; the throttle's
    # places go in due-time order without a second deferral for any step. The one
    # exception: a step settled while its contact could not be reached (DNC, opted out)
    # holds no place, since a step to be skipped must not keep others out of a minute; if
    # the contact can be reached again by its due moment, it takes a place then, and a
    # full minute moves it once more.
    world, inputs, _ = world_inputs
    out = _replay(world, inputs)
    kinds = {s["id"]: s["type"] for s in world["sequences"][0]["steps"]}
    told: dict[tuple[str, str], str] = {}
    placeless: set[tuple[str, str]] = set()
    deferrals: dict[tuple[str, str], list[str]] = {}
    for event in out.events:
        data = event["data"]
        key = (data.get("enrollment_id", ""), data.get("step_id", ""))
        if event["type"] == "step.scheduled":
            told[key] = data["due_at"]
            command = STEP_COMMANDS.get(kinds[data["step_id"]])
            if command and _blocked(_state_before(inputs, event), data["contact_id"], command):
                placeless.add(key)
        elif event["type"] == "step.deferred":
            deferrals.setdefault(key, []).append(data["reason"])
            told[key] = data["to"]
        elif event["type"] == "step.executed":
            assert event["time"] == told[key], key
    for key, reasons in deferrals.items():
        if key in placeless:
            assert len(reasons) == 1 or reasons[1:] == ["throttle"], (key, reasons)
        else:
            assert len(reasons) == 1, (key, reasons)


def _only_definition_first(out: Outcome) -> bool:
    times = [parse_time(e["time"]) for e in out.events[1:]]
    return times == sorted(times)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds())
def test_replay_is_deterministic(
    world_inputs: tuple[dict[str, Any], list[dict[str, Any]], dict[str, str]],
) -> None:
    world, inputs, _ = world_inputs
    assert _replay(world, inputs).events == _replay(world, inputs).events


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds(), st.randoms(use_true_random=False))
def test_any_input_order_gives_unique_ids_and_no_double_effects(
    world_inputs: tuple[dict[str, Any], list[dict[str, Any]], dict[str, str]], rnd: Any
) -> None:
    world, inputs, _ = world_inputs
    shuffled = inputs[:]
    rnd.shuffle(shuffled)
    out = _replay(world, shuffled)
    ids = [e["id"] for e in out.events]
    assert len(ids) == len(set(ids))
    effects = [
        e["data"]["effect_id"]
        for e in out.events
        if "effect_id" in e["data"] and e["type"] != "step.executed"
    ]
    assert len(effects) == len(set(effects))
