"""`dripstream effects --commands` over a whole output stream (a replay's `--out`): each effect
command is carried out once, and the decisions beside it are skipped without a word each."""

from __future__ import annotations

import asyncio
import os
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest

from effects.commands import EFFECT_TYPES
from effects.fakes.sendgrid_server import API_KEY, FakeSendGridServer
from effects.fakes.twilio_server import ACCOUNT_SID, AUTH_TOKEN, FakeTwilioServer
from effects.fakes.webhook_receiver import FakeWebhookReceiver
from effects.filerun import run_commands_file
from effects.settings import EffectsSettings
from ops.cli import main
from schemas.registry import EVENT_TYPES
from tests.effects.helpers import sms

REPO = Path(__file__).resolve().parents[2]
CONTACTS = 10

SEQUENCES = """\
account:
  timezone: America/New_York
  opt_out_phrase: "Reply STOP to opt out."
  lines: {{line-1: "+12125550000"}}
sequences:
  - id: mixed
    name: Text, webhook, e-mail
    process_on: every_day
    outbound_line: line-1
    steps:
      - {{id: s1, type: send_sms, text: "Hi [FirstName]!"}}
      - {{id: s2, type: send_webhook, url: "{hook}/lead"}}
      - {{id: s3, type: email_contact, subject: Hello, body: "Hi [FirstName]"}}
    triggers:
      - {{type: contact_created}}
"""


def replay_out(tmp_path: Path, hook: str) -> Path:
    """`dripstream replay --out` of CONTACTS new contacts through SEQUENCES."""
    (tmp_path / "sequences.yaml").write_text(SEQUENCES.format(hook=hook))
    created = [
        {
            "specversion": "1.0",
            "id": f"e-{n}",
            "source": "crm",
            "type": "contact.created",
            "time": f"2027-07-02T14:{n:02d}:00Z",
            "subject": f"c-{n}",
            "data": {
                "contact_id": f"c-{n}",
                "first_name": f"Ana{n}",
                "phone": f"+1646555{n:04d}",
                "email": f"c{n}@example.com",
            },
        }
        for n in range(CONTACTS)
    ]
    (tmp_path / "events.jsonl").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in created))
    out = tmp_path / "out.jsonl"
    status = main(
        [
            "replay",
            "--sequences", str(tmp_path / "sequences.yaml"),
            "--events", str(tmp_path / "events.jsonl"),
            "--until", "2027-07-03T00:00:00Z",
            "--out", str(out),
        ]
    )  # fmt: skip
    assert status == 0
    return out


def provider_environment(twilio: FakeTwilioServer, sendgrid: FakeSendGridServer) -> dict[str, str]:
    """The README's settings for the fakes, an in-memory ledger, lines fast enough for a test."""
    kept = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return kept | {
        "TWILIO_API_BASE": twilio.url,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "SENDGRID_API_BASE": sendgrid.url,
        "SENDGRID_API_KEY": API_KEY,
        "EFFECTS_WEBHOOK_ALLOWLIST": "127.0.0.1",
        "EFFECTS_LINE_RATE": "1000",
        "EFFECTS_LINE_BURST": "100",
    }


async def dripstream_effects(
    commands: Path, outcomes: Path, environment: dict[str, str], *, stop_after: float | None = None
) -> tuple[int, str]:
    """Runs `dripstream effects --commands --outcomes` as a user would: its status and stderr
    (SIGTERM after `stop_after` seconds, if given). A process of its own, so this loop goes
    on serving the fakes meanwhile."""
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "ops.effects_cli", "effects"),
        *("--commands", str(commands), "--outcomes", str(outcomes)),
        cwd=REPO,
        env=environment,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    if stop_after is not None:
        await asyncio.sleep(stop_after)
        process.terminate()
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, stderr.decode()


async def test_a_stopped_file_run_finishes_its_sends_and_names_what_is_left(
    tmp_path: Path, twilio: FakeTwilioServer, sendgrid: FakeSendGridServer
) -> None:
    # given twenty texts from one line paced at one every 2 s
    commands = tmp_path / "texts.jsonl"
    commands.write_bytes(
        b"".join(sms(n, to=f"+1646555{n:04d}").encode() + b"\n" for n in range(20))
    )
    environment = provider_environment(twilio, sendgrid) | {
        "EFFECTS_LINE_RATE": "0.5",
        "EFFECTS_LINE_BURST": "1",
    }
    outcomes = tmp_path / "outcomes.jsonl"
    # when it is sent SIGTERM while texts wait for their turn on the line
    status, stderr = await dripstream_effects(commands, outcomes, environment, stop_after=4.0)
    # then it stops at once with 130, saying so, and each text that went out has its outcome
    assert status == 130, stderr
    assert "stopped by a signal" in stderr
    sent = sorted(twilio.accepted_by_effect)
    assert 1 <= len(sent) < 20
    assert max(twilio.accepted_by_effect.values()) == 1
    written = [orjson.loads(line) for line in outcomes.read_bytes().splitlines()]
    assert sorted(o["data"]["effect_id"] for o in written) == sent
    assert {o["type"] for o in written} == {"effect.sent"}


@pytest.mark.timeout(180)
async def test_a_replay_output_file_has_each_effect_carried_out_once_and_exits_0(
    tmp_path: Path,
    twilio: FakeTwilioServer,
    sendgrid: FakeSendGridServer,
    receiver: FakeWebhookReceiver,
) -> None:
    # given a replay's whole output: decisions (step.executed names each effect's id) among
    # the effect commands themselves
    out = replay_out(tmp_path, receiver.url)
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    kinds = Counter(line["type"] for line in lines)
    assert kinds["step.executed"] == 3 * CONTACTS
    assert kinds["sms.send"] == kinds["webhook.post"] == kinds["email.send"] == CONTACTS
    others = sum(count for kind, count in kinds.items() if kind not in EFFECT_TYPES)
    # when `dripstream effects` runs over it against the fake providers
    outcomes = tmp_path / "outcomes.jsonl"
    status, stderr = await dripstream_effects(out, outcomes, provider_environment(twilio, sendgrid))
    # then every effect reached its provider exactly once
    assert status == 0, stderr
    assert sorted(twilio.accepted_by_effect.values()) == [1] * CONTACTS
    assert sorted(sendgrid.accepted_by_effect.values()) == [1] * CONTACTS
    hooks = Counter(hook.headers["webhook-id"] for hook in receiver.received)
    assert sorted(hooks.values()) == [1] * CONTACTS
    # and each command has its effect.sent, no decision an outcome of its own
    written = [orjson.loads(line) for line in outcomes.read_bytes().splitlines()]
    assert Counter((o["type"], o["data"]["effect_type"]) for o in written) == {
        ("effect.sent", "sms.send"): CONTACTS,
        ("effect.sent", "webhook.post"): CONTACTS,
        ("effect.sent", "email.send"): CONTACTS,
    }
    # and the decisions are skipped quietly, counted once in the summary
    assert "is required" not in stderr
    assert f"{3 * CONTACTS} effect commands, {others} other events skipped" in stderr
    # and the user is told a second run would send again (the ledger is in memory), and
    # that the webhooks went out unsigned
    assert "the effect ledger is in memory (no DATABASE_URL, or --memory-ledger)" in stderr
    assert "EFFECTS_WEBHOOK_SECRET is not set" in stderr


@pytest.mark.parametrize("provider", ["twilio", "sendgrid"])
async def test_refused_credentials_stop_the_run_and_fail_no_step(
    tmp_path: Path,
    twilio: FakeTwilioServer,
    sendgrid: FakeSendGridServer,
    receiver: FakeWebhookReceiver,
    provider: str,
) -> None:
    # given a replay's output, and a wrong key for one provider
    out = replay_out(tmp_path, receiver.url)
    wrong = {"TWILIO_AUTH_TOKEN": "wrong"} if provider == "twilio" else {"SENDGRID_API_KEY": "SG.x"}
    environment = provider_environment(twilio, sendgrid) | wrong
    outcomes = tmp_path / "outcomes.jsonl"
    # when `dripstream effects` runs over it
    status, stderr = await dripstream_effects(out, outcomes, environment)
    # then it stops with the reason, exit 2, and no effect of that provider failed: a
    # step is not failed for the operator's key
    assert status == 2, stderr
    assert "a provider refused the credentials" in stderr
    written = [orjson.loads(line) for line in outcomes.read_bytes().splitlines()]
    refused = "sms.send" if provider == "twilio" else "email.send"
    assert [o for o in written if o["data"]["effect_type"] == refused] == []
    assert {o["type"] for o in written} <= {"effect.sent"}


async def test_a_line_that_is_no_valid_event_is_still_reported_by_its_number(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # given a decision, a command, a line of garbage and an event of an unknown type
    decision = sms(1).to_json() | {"type": "step.executed"}
    unknown = sms(2).to_json() | {"type": "foo.bar"}
    commands = tmp_path / "mixed.jsonl"
    commands.write_bytes(
        b"\n".join([orjson.dumps(decision), sms(1).encode(), b"{garbage", orjson.dumps(unknown)])
        + b"\n"
    )
    outcomes = tmp_path / "outcomes.jsonl"
    # when the file runner takes it
    async with FakeTwilioServer() as twilio:
        settings = EffectsSettings(
            twilio_account_sid=ACCOUNT_SID,
            twilio_auth_token=AUTH_TOKEN,
            twilio_api_base=twilio.url,
        )
        status = await run_commands_file(settings, commands, outcomes)
    # then the command went out once, the two bad lines are named, the status is 1
    assert status == 1
    assert list(twilio.accepted_by_effect.values()) == [1]
    assert [orjson.loads(line)["type"] for line in outcomes.read_bytes().splitlines()] == [
        "effect.sent"
    ]
    reported = capsys.readouterr().err.splitlines()
    [garbage, unknown, summary] = [line for line in reported if line.startswith(str(commands))]
    assert garbage.startswith(f"{commands}:3: event: not valid JSON")
    assert unknown == f"{commands}:4: type: unknown event type 'foo.bar'"
    assert summary == (
        f"{commands}: 1 effect commands, 1 other events skipped (not effect commands), "
        "2 invalid lines"
    )


def test_every_effect_command_on_the_wire_is_one_the_processor_carries_out() -> None:
    # The file runner skips what is not in EFFECT_TYPES: an effect type added to the
    # registry alone would be skipped without a word.
    on_effects = {name for name, info in EVENT_TYPES.items() if info.topic == "effects"}
    assert on_effects <= EFFECT_TYPES
    assert EFFECT_TYPES.issubset(EVENT_TYPES)
