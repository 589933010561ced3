"""The processor over the in-memory ledger and in-memory senders: at most once, outcomes,
retries, pacing. (The real SDKs against fake servers are in test_twilio / test_email.)"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from effects.commands import EFFECT_TYPES, CommandRejected
from effects.fakes.senders import FakeSenders
from effects.ledger import IN_FLIGHT, SENT, UNKNOWN
from effects.ledger_memory import InMemoryLedger
from effects.ports import Ambiguous, EffectId, Rejected, SendResult, SmsMessage, Transient
from effects.processor import _PLANNERS, CredentialsRefused, EffectProcessor, RetryAbandoned
from effects.ratelimit import LineRateLimiter
from effects.retry import RetryPolicy
from schemas.envelope import CloudEvent, format_time
from tests.effects.helpers import LINE, T0, Clock, Sleeps, command, sms, types_of


def processor(
    fakes: FakeSenders,
    sleeps: Sleeps,
    ledger: InMemoryLedger | None = None,
    *,
    limiter: LineRateLimiter | None = None,
    jitter: float = 0.5,
) -> EffectProcessor:
    return EffectProcessor(
        ledger=ledger or InMemoryLedger("p-1"),
        senders=fakes.senders(),
        clock=sleeps.clock,
        retry=RetryPolicy(max_attempts=5, base_seconds=1.0, cap_seconds=60.0),
        sleep=sleeps,
        rand=lambda: jitter,
        message_limiter=limiter,
    )


async def test_a_command_is_sent_once_and_answered_with_effect_sent() -> None:
    fakes, sleeps = FakeSenders(), Sleeps()
    # when
    events = await processor(fakes, sleeps).handle(sms())
    # then
    assert len(fakes.sms.sent) == 1
    assert fakes.sms.sent[0].from_number == LINE
    [sent] = events
    assert sent.type == "effect.sent"
    assert sent.id == "fx:welcome:c-1:1:s1:1/sent"
    assert sent.subject == "c-1"
    assert sent.time == sleeps.clock.now
    assert sent.source == "dripstream"
    assert sent.data["effect_id"] == "fx:welcome:c-1:1:s1:1"
    assert sent.data["provider"] == "twilio"
    assert sent.data["provider_id"] == "fake-twilio-1"
    assert sent.data["sequence_id"] == "welcome"
    assert sent.data["enrollment_id"] == "welcome:c-1:1"


async def test_a_duplicate_command_is_not_sent_again_but_its_outcome_is_replayed() -> None:
    fakes, sleeps = FakeSenders(), Sleeps()
    effects = processor(fakes, sleeps)
    first = await effects.handle(sms())
    sleeps.clock.advance(60)
    # when the same command is delivered again (a Kafka redelivery)
    again = await effects.handle(sms())
    # then nothing more is sent, and the same outcome (same id, same time) comes out
    assert len(fakes.sms.sent) == 1
    assert [e.encode() for e in again] == [e.encode() for e in first]


async def test_duplicates_in_one_batch_send_once() -> None:
    fakes, sleeps = FakeSenders(), Sleeps()
    events = await processor(fakes, sleeps).handle_batch([sms(), sms(), sms(2)])
    assert len(fakes.sms.sent) == 2
    assert sorted(e.id for e in events if e.type == "effect.sent")[0].startswith("fx:")


async def test_an_unsubscribed_recipient_fails_the_effect_and_opts_the_contact_out() -> None:
    fakes = FakeSenders()
    fakes.sms.script = lambda to: Rejected("recipient unsubscribed", "21610", opted_out=True)
    effects = processor(fakes, Sleeps())
    events = await effects.handle(sms())
    assert types_of(events) == ["effect.failed", "contact.opted_out"]
    failed, opted_out = events
    assert failed.data["code"] == "21610"
    assert opted_out.data == {
        "contact_id": "c-1",
        "channel": "sms",
        "reason": "recipient unsubscribed",
    }
    assert opted_out.subject == "c-1"
    assert opted_out.dataversion == 2  # contact.opted_out's current version (schemas.registry)
    # and a redelivery replays both, without a second attempt
    assert [e.id for e in await effects.handle(sms())] == [e.id for e in events]
    assert len(fakes.sms.sent) == 1


async def test_refusals_are_retried_with_capped_exponential_backoff_and_full_jitter() -> None:
    answers = [Transient("429", "20429"), Transient("503", "20500")]
    fakes, sleeps = FakeSenders(), Sleeps()
    fakes.sms.script = lambda to: answers.pop(0) if answers else None
    events = await processor(fakes, sleeps, jitter=0.5).handle(sms())
    assert types_of(events) == ["effect.sent"]
    assert len(fakes.sms.sent) == 3
    # uniform(0, 1s) then uniform(0, 2s), both drawn at 0.5
    assert sleeps.delays == [0.5, 1.0]


async def test_a_retry_after_is_honoured() -> None:
    answers = [Transient("429", "429", retry_after=7.0)]
    fakes, sleeps = FakeSenders(), Sleeps()
    fakes.email.script = lambda to: answers.pop(0) if answers else None
    await processor(fakes, sleeps).handle(
        command("email.send", to="a@example.com", subject="Hello", body="Hi")
    )
    assert sleeps.delays == [7.0]


async def test_a_retry_after_longer_than_a_retry_may_wait_fails_saying_so() -> None:
    fakes, sleeps = FakeSenders(), Sleeps()
    fakes.sms.script = lambda to: Transient("twilio 429: Too Many Requests", "429", 3600.0)
    [failed] = await processor(fakes, sleeps).handle(sms())
    assert failed.type == "effect.failed"
    assert failed.data["reason"] == (
        "the provider asked to wait 3600 s (Retry-After), longer than a retry may wait"
        " (300 s): twilio 429: Too Many Requests"
    )
    assert sleeps.delays == []


async def test_after_five_refusals_the_effect_fails() -> None:
    fakes, sleeps = FakeSenders(), Sleeps()
    fakes.sms.script = lambda to: Transient("http 503", "503")
    ledger = InMemoryLedger("p-1")
    events = await processor(fakes, sleeps, ledger).handle(sms())
    assert len(fakes.sms.sent) == 5
    assert len(sleeps.delays) == 4
    [failed] = events
    assert failed.type == "effect.failed"
    assert failed.data["reason"] == "gave up after 5 attempts: http 503"
    entry = await ledger.get(EffectId("fx:welcome:c-1:1:s1:1"))
    assert entry is not None
    assert entry.attempts == 5


async def test_a_provider_never_reached_fails_with_the_attempts_code() -> None:
    # given a provider whose connection is refused at every try (no provider code)
    fakes, sleeps = FakeSenders(), Sleeps()
    fakes.sms.script = lambda to: Transient("connection to Twilio failed: refused")
    [failed] = await processor(fakes, sleeps).handle(sms())
    # then the failure says so, with a code a subscriber can match on
    assert (failed.type, failed.data["code"]) == ("effect.failed", "attempts")
    assert failed.data["reason"].startswith("gave up after 5 attempts: connection to Twilio")


async def test_an_ambiguous_answer_is_unknown_and_never_retried() -> None:
    fakes, sleeps = FakeSenders(), Sleeps()
    fakes.sms.script = lambda to: Ambiguous("read timeout")
    effects = processor(fakes, sleeps)
    events = await effects.handle(sms())
    assert types_of(events) == ["effect.unknown"]
    assert events[0].data["reason"] == "read timeout"
    await effects.handle(sms())
    assert len(fakes.sms.sent) == 1
    assert sleeps.delays == []


class _CallbackFirst(InMemoryLedger):
    """A ledger whose sends get the provider's status callback as soon as they start,
    before the request itself is answered."""

    async def start(self, effect_id: EffectId, command: CloudEvent, at: datetime) -> int | None:
        attempt = await super().start(effect_id, command, at)
        await self.reconcile(effect_id, "twilio", "SM1", "sent", at)
        return attempt


async def test_an_unanswered_send_a_callback_settled_meanwhile_says_no_unknown() -> None:
    # given a send whose callback said "sent" while the request went unanswered
    fakes, sleeps = FakeSenders(), Sleeps()
    fakes.sms.script = lambda to: Ambiguous("read timeout")
    ledger = _CallbackFirst("p-1")
    # then no effect.unknown contradicts the callback's word (its own outcome said sent)
    assert await processor(fakes, sleeps, ledger).handle(sms()) == []
    settled = await ledger.get(EffectId("fx:welcome:c-1:1:s1:1"))
    assert settled is not None
    assert settled.status == SENT


async def test_a_sender_that_raises_leaves_the_effect_unknown() -> None:
    fakes = FakeSenders()

    def explode(to: str) -> None:
        raise RuntimeError("bug")

    fakes.sms.script = explode  # type: ignore[assignment]
    events = await processor(fakes, Sleeps()).handle(sms())
    assert types_of(events) == ["effect.unknown"]


async def test_a_crash_mid_send_leaves_unknown_after_restart() -> None:
    # given a processor that died while its provider call was in progress
    ledger = InMemoryLedger("p-1")
    hanging = asyncio.Event()
    fakes = FakeSenders()

    async def never_returns(message: object) -> None:
        hanging.set()
        await asyncio.sleep(3600)

    fakes.sms.send_sms = never_returns  # type: ignore[method-assign, assignment]
    task = asyncio.create_task(processor(fakes, Sleeps(), ledger).handle(sms()))
    await hanging.wait()
    task.cancel()  # the process is gone
    entry = await ledger.get(EffectId("fx:welcome:c-1:1:s1:1"))
    assert entry is not None
    assert entry.status == IN_FLIGHT
    # when a new processor starts
    fresh = FakeSenders()
    restarted = processor(fresh, Sleeps(), ledger.restarted("p-2"))
    recovered = await restarted.recover()
    # then the effect is unknown, announced once, and never resent
    assert types_of(recovered) == ["effect.unknown"]
    assert recovered[0].id == "fx:welcome:c-1:1:s1:1/unknown"
    assert types_of(await restarted.handle(sms())) == ["effect.unknown"]
    assert fresh.sms.sent == []
    entry = await restarted.ledger.get(EffectId("fx:welcome:c-1:1:s1:1"))
    assert entry is not None
    assert entry.status == UNKNOWN


async def test_a_command_missing_a_field_fails_naming_it() -> None:
    fakes = FakeSenders()
    bad = command("sms.send", from_number=LINE, body="Hi")  # no "to"
    [failed] = await processor(fakes, Sleeps()).handle(bad)
    assert failed.type == "effect.failed"
    assert failed.data["reason"] == "data.to: is required"
    assert failed.data["code"] == "invalid_command"
    assert fakes.sms.sent == []


async def test_a_command_without_an_effect_id_is_rejected() -> None:
    bad = command("sms.send", to="+12125550101", from_number=LINE, body="Hi")
    bad.data.pop("effect_id")  # type: ignore[attr-defined]
    with pytest.raises(CommandRejected, match=r"data\.effect_id: is required"):
        await processor(FakeSenders(), Sleeps()).handle(bad)


async def test_an_event_that_is_no_command_is_refused_and_leaves_its_effect_id_alone() -> None:
    # given the decision that names an effect: it carries the effect's own id
    fakes, sleeps = FakeSenders(), Sleeps()
    ledger = InMemoryLedger("p-1")
    effects = processor(fakes, sleeps, ledger)
    executed = command("step.executed", 1)
    # when it reaches the processor
    with pytest.raises(CommandRejected, match=r"'step\.executed' is not an effect command"):
        await effects.handle(executed)
    # then nothing is recorded under that id, and the command itself still goes out
    assert await ledger.get(EffectId("fx:welcome:c-1:1:s1:1")) is None
    assert types_of(await effects.handle(sms(1))) == ["effect.sent"]
    assert len(fakes.sms.sent) == 1


async def test_each_line_is_paced_by_its_own_token_bucket() -> None:
    fakes, sleeps = FakeSenders(), Sleeps()
    # All four reserve their slot at the same instant (time stands still at 0).
    limiter = LineRateLimiter(1.0, 1, monotonic=lambda: 0.0, sleep=sleeps)
    effects = processor(fakes, sleeps, limiter=limiter)
    batch = [sms(1), sms(2), sms(3), sms(4, from_number="+13105550000")]
    # when four messages go out at once, three of them on one line limited to 1/s
    await effects.handle_batch(batch)
    # then on that line the 2nd waits 1 s and the 3rd 2 s; the other line does not wait
    assert len(fakes.sms.sent) == 4
    assert sorted(sleeps.delays) == [1.0, 2.0]


async def test_a_stop_leaves_the_commands_waiting_for_a_slot_unclaimed() -> None:
    # given a processor that carries out one command at a time, and a slow provider
    fakes, ledger = FakeSenders(), InMemoryLedger()
    started = asyncio.Event()

    class SlowTexts:
        async def send_sms(self, message: SmsMessage) -> SendResult:
            started.set()
            await asyncio.sleep(0.1)
            return await fakes.sms.send_sms(message)

    senders = replace(fakes.senders(), sms=SlowTexts())
    effects = EffectProcessor(ledger=ledger, senders=senders, clock=Sleeps().clock, concurrency=1)
    # when ten texts are handed over and a stop comes while the first is being sent
    batch = asyncio.gather(*(effects.handle(sms(n)) for n in range(10)), return_exceptions=True)
    await started.wait()
    effects.stop_retrying()
    results = await asyncio.wait_for(batch, timeout=5)
    # then the one in progress is finished, and the nine waiting were never claimed
    assert len(fakes.sms.sent) == 1
    assert sum(isinstance(r, RetryAbandoned) for r in results) == 9
    claimed = [await ledger.get(EffectId(f"fx:welcome:c-{n}:1:s1:1")) for n in range(10)]
    assert sum(entry is not None for entry in claimed) == 1


async def test_a_ring_groups_texts_each_take_a_turn_on_the_line() -> None:
    # given a line paced at one text a second, and a notice to a group of three
    fakes, sleeps = FakeSenders(), Sleeps()
    limiter = LineRateLimiter(1.0, 1, monotonic=lambda: 0.0, sleep=sleeps)
    effects = processor(fakes, sleeps, limiter=limiter)
    members = ["+12125550007", "+12125550008", "+12125550009"]
    notify = command(
        "notify.sms", to="rg-sales", ring_group_numbers=members, from_number=LINE, body="Lead"
    )
    # when it is carried out
    assert types_of(await effects.handle(notify)) == ["effect.sent"]
    # then three texts went out, the second and third each waiting their turn
    assert [text.to for text in fakes.sms.sent] == members
    assert sleeps.delays == [1.0, 2.0]


async def test_a_number_twice_in_a_ring_group_is_texted_once() -> None:
    # given a notice whose group lists one desk phone for two members
    fakes, sleeps = FakeSenders(), Sleeps()
    effects = processor(fakes, sleeps)
    members = ["+12125550007", "+12125550008", "+12125550007"]
    notify = command(
        "notify.sms", to="rg-sales", ring_group_numbers=members, from_number=LINE, body="Lead"
    )
    # when it is carried out
    assert types_of(await effects.handle(notify)) == ["effect.sent"]
    # then each number got one text
    assert [text.to for text in fakes.sms.sent] == ["+12125550007", "+12125550008"]


async def test_after_refused_credentials_no_other_send_is_tried_nor_a_try_used() -> None:
    # given a provider that refuses the processor's credentials, and five texts at once
    fakes, ledger = FakeSenders(), InMemoryLedger()
    fakes.sms.script = lambda to: Transient("twilio 401: Authenticate", "20003", credentials=True)
    effects = processor(fakes, Sleeps(), ledger)
    # when the batch is handled
    outcomes = await effects.handle_batch([sms(n, to=f"+1212555010{n}") for n in range(1, 6)])
    # then the provider was asked once, nothing has an outcome, and the processor says why
    assert (len(fakes.sms.sent), outcomes) == (1, [])
    with pytest.raises(CredentialsRefused):
        effects.check_credentials()
    # and the refused text is pending with none of its tries used; the others unclaimed
    rows = [await ledger.get(EffectId(f"fx:welcome:c-{n}:1:s1:1")) for n in range(1, 6)]
    assert [(r.status, r.attempts) if r else None for r in rows] == [("pending", 0)] + [None] * 4
    # and with the right credentials the next processor sends each once
    fixed = FakeSenders()
    again = await processor(fixed, Sleeps(), ledger).handle_batch(
        [sms(n, to=f"+1212555010{n}") for n in range(1, 6)]
    )
    assert types_of(again) == ["effect.sent"] * 5
    assert len(fixed.sms.sent) == 5


def _on_a_line_that_never_frees() -> tuple[FakeSenders, InMemoryLedger, EffectProcessor]:
    """A processor whose line takes one text a minute, and whose wait for a turn lasts until
    it is cancelled: a send queued behind the first waits for a stop."""
    fakes, ledger = FakeSenders(), InMemoryLedger()

    async def forever(_seconds: float) -> None:
        await asyncio.Event().wait()

    limiter = LineRateLimiter(1 / 60, 1, monotonic=lambda: 0.0, sleep=forever)
    return fakes, ledger, processor(fakes, Sleeps(), limiter=limiter, ledger=ledger)


async def test_a_stop_ends_a_ring_groups_wait_for_the_line_and_texts_no_one_twice() -> None:
    # given a line paced at one text a minute, and a notice to a group of three
    fakes, _, effects = _on_a_line_that_never_frees()
    members = ["+12125550007", "+12125550008", "+12125550009"]
    notify = command(
        "notify.sms", to="rg-sales", ring_group_numbers=members, from_number=LINE, body="Lead"
    )
    # when the first member is texted and a stop comes while the second waits its turn
    handling = asyncio.ensure_future(effects.handle(notify))
    await asyncio.sleep(0.05)
    effects.stop_retrying()
    [sent] = await asyncio.wait_for(handling, timeout=5)
    # then the notice is sent, saying who was left out, and is not sent again
    assert [text.to for text in fakes.sms.sent] == members[:1]
    assert sent.type == "effect.sent"
    assert sent.data["undelivered"].count("the processor was stopping") == 2


async def test_a_stop_leaves_the_sends_waiting_for_their_line_pending() -> None:
    # given a line paced at one text a minute, and a sleep that lasts until cancelled
    fakes, ledger, effects = _on_a_line_that_never_frees()
    # when three texts on the line are handed over, and a stop comes
    batch = asyncio.gather(*(effects.handle(sms(n)) for n in (1, 2, 3)), return_exceptions=True)
    await asyncio.sleep(0.05)
    effects.stop_retrying()
    results = await asyncio.wait_for(batch, timeout=5)
    # then the first went out and the two waiting are left, never attempted, at once
    assert len(fakes.sms.sent) == 1
    assert sum(isinstance(r, RetryAbandoned) for r in results) == 2
    waiting = [await ledger.get(EffectId(f"fx:welcome:c-{n}:1:s1:1")) for n in (2, 3)]
    assert [(e.status, e.attempts) for e in waiting if e] == [("pending", 0), ("pending", 0)]


async def test_mms_email_calls_voicemail_webhooks_reach_their_senders() -> None:
    fakes, sleeps = FakeSenders(), Sleeps()
    effects = processor(fakes, sleeps)
    batch = [
        command(
            "mms.send",
            1,
            to="+12125550101",
            from_number=LINE,
            body="Look",
            media_url="https://cdn.example.com/a.png",
        ),
        command("email.send", 2, to="a@example.com", subject="Hello", body="Hi"),
        command("notify.email", 3, to="sam@example.com", subject="New lead", body="c-3"),
        command("notify.sms", 4, to="+12125550007", from_number=LINE, body="New lead"),
        command(
            "call.dial",
            5,
            to="+12125550105",
            mode="preview",
            ring_group="rg-sales",
            ring_group_numbers=["+12125550007"],
            message="Press any key",
            repeat_message=True,
            from_number=LINE,
        ),
        command(
            "voicemail.drop",
            6,
            to="+12125550106",
            recording_url="https://cdn.example.com/vm.mp3",
            from_number=LINE,
        ),
        command("webhook.post", 7, url="https://hooks.example.com/x", payload={"a": 1}),
    ]
    events = await effects.handle_batch(batch)
    assert types_of(events) == ["effect.sent"] * 7
    assert fakes.sms.sent[0].media_urls == ("https://cdn.example.com/a.png",)
    assert [m.commercial for m in fakes.email.sent] == [True, False]
    assert fakes.calls.placed[0].agent_numbers == ("+12125550007",)
    assert fakes.calls.placed[0].repeat_message is True
    assert fakes.voicemail.dropped[0].recording_url.endswith("vm.mp3")
    assert fakes.webhooks.posted[0].payload == {"a": 1}


async def test_a_ring_group_notification_texts_every_member() -> None:
    fakes = FakeSenders()
    notify = command(
        "notify.sms",
        to="rg-sales",
        ring_group="rg-sales",
        ring_group_numbers=["+12125550007", "+12125550008"],
        from_number=LINE,
        body="New lead: Ann",
    )
    [sent] = await processor(fakes, Sleeps()).handle(notify)
    assert [(m.to, m.from_number, m.body) for m in fakes.sms.sent] == [
        ("+12125550007", LINE, "New lead: Ann"),
        ("+12125550008", LINE, "New lead: Ann"),
    ]
    assert sent.data["provider_id"] == "fake-twilio-1,fake-twilio-2"


async def test_once_one_member_is_texted_another_members_refusal_is_not_retried() -> None:
    fakes, sleeps = FakeSenders(), Sleeps()
    fakes.sms.script = lambda to: Transient("503") if to == "+12125550008" else None
    notify = command(
        "notify.sms",
        to="rg-sales",
        ring_group_numbers=["+12125550007", "+12125550008"],
        from_number=LINE,
        body="New lead",
    )
    [sent] = await processor(fakes, sleeps).handle(notify)
    assert sent.type == "effect.sent"
    assert [m.to for m in fakes.sms.sent] == ["+12125550007", "+12125550008"]
    assert sleeps.delays == []


async def test_an_owner_notice_without_a_line_uses_the_default_number() -> None:
    fakes = FakeSenders()
    effects = EffectProcessor(
        ledger=InMemoryLedger(),
        senders=fakes.senders(),
        clock=Clock(),
        default_from_number="+18005550000",
    )
    notice = command("notify.sms", to="+12125550007", ring_group=None, body="You have a lead.")
    assert types_of(await effects.handle(notice)) == ["effect.sent"]
    assert fakes.sms.sent[0].from_number == "+18005550000"
    # a line's own number goes before the default
    text = command("sms.send", 2, to="+12125550101", from_number=LINE, body="hi")
    assert types_of(await effects.handle(text)) == ["effect.sent"]
    assert fakes.sms.sent[1].from_number == LINE
    # without a default there is no caller id: the effect fails, naming the field
    [failed] = await processor(FakeSenders(), Sleeps()).handle(notice)
    assert failed.data["reason"].startswith("data.from_number: is required")


async def test_a_notification_with_nobody_to_reach_fails() -> None:
    notify = command("notify.email", to="rg-empty", ring_group_emails=[], subject="x", body="y")
    [failed] = await processor(FakeSenders(), Sleeps()).handle(notify)
    assert failed.type == "effect.failed"
    assert failed.data["reason"].startswith("data.ring_group_emails: no address to notify")


@pytest.mark.parametrize("mode", ["progressive", "preview"])
async def test_a_dialer_with_no_agent_to_connect_fails_without_calling(mode: str) -> None:
    fakes = FakeSenders()
    dial = command(
        "call.dial", to="+12125550105", mode=mode, ring_group="rg-empty", ring_group_numbers=[]
    )
    [failed] = await processor(fakes, Sleeps()).handle(dial)
    assert failed.type == "effect.failed"
    assert failed.data["code"] == "invalid_command"
    assert failed.data["reason"] == (
        "data.ring_group_numbers: ring group 'rg-empty' has no agent numbers"
    )
    assert fakes.calls.placed == []


async def test_a_ring_group_email_goes_to_every_member_in_one_mail() -> None:
    fakes = FakeSenders()
    notify = command(
        "notify.email",
        to="rg-sales",
        ring_group_emails=["sam@example.com", "kim@example.com"],
        subject="New lead",
        body="Ann",
    )
    await processor(fakes, Sleeps()).handle(notify)
    [mail] = fakes.email.sent
    assert mail.to == ("sam@example.com", "kim@example.com")
    assert mail.commercial is False


async def test_a_dialer_step_without_a_message_gets_the_standard_prompt() -> None:
    fakes = FakeSenders()
    dial = command(
        "call.dial",
        to="+12125550101",
        mode="progressive",
        message=None,
        ring_group_numbers=["+12125550007"],
        from_number=LINE,
    )
    await processor(fakes, Sleeps()).handle(dial)
    assert "press 1" in fakes.calls.placed[0].message


async def test_power_dialer_commands_are_bookkeeping() -> None:
    fakes = FakeSenders()
    effects = processor(fakes, Sleeps())
    await effects.handle(command("power_dialer.added", 1, user_id="u-7"))
    await effects.handle(command("power_dialer.added", 1, user_id="u-8", effect_id="fx:2"))
    assert await fakes.power_dialer.users_for("c-1") == ["u-7", "u-8"]
    events = await effects.handle(
        command("power_dialer.removed", 1, user_id="u-7", effect_id="fx:3")
    )
    assert await fakes.power_dialer.users_for("c-1") == ["u-8"]
    assert events[0].data["provider"] == "power_dialer"
    await effects.handle(command("power_dialer.removed", 1, all_users=True, effect_id="fx:4"))
    assert await fakes.power_dialer.users_for("c-1") == []


async def test_a_power_dialer_add_with_no_user_fails_saying_why_and_adds_nobody() -> None:
    # given a power_dialer step that names no user, for a contact with no owner
    fakes = FakeSenders()
    [failed] = await processor(fakes, Sleeps()).handle(
        command("power_dialer.added", 1, user_id=None)
    )
    # then it fails with a reason a reader of the history understands, and no row is added
    assert (failed.type, failed.data["code"]) == ("effect.failed", "invalid_command")
    assert "no owner" in failed.data["reason"]
    assert await fakes.power_dialer.users_for("c-1") == []


async def test_outcome_ids_are_a_function_of_the_effect_id() -> None:
    a = await processor(FakeSenders(), Sleeps(Clock())).handle(sms())
    b = await processor(FakeSenders(), Sleeps(Clock())).handle(sms())
    assert [e.encode() for e in a] == [e.encode() for e in b]
    ledger = InMemoryLedger("x")
    await processor(FakeSenders(), Sleeps(), ledger).handle(sms())
    assert (await ledger.get(EffectId("fx:welcome:c-1:1:s1:1"))).status == SENT  # type: ignore[union-attr]


async def test_a_text_held_up_past_the_contacts_quiet_hours_is_not_sent_late() -> None:
    fakes, sleeps = FakeSenders(), Sleeps()
    effects = processor(fakes, sleeps)
    closes = format_time(T0 + timedelta(minutes=5))
    # when one text reaches the processor before its window closes and one after
    [sent] = await effects.handle(sms(1, send_before=closes))
    sleeps.clock.advance(5 * 60)
    [expired] = await effects.handle(sms(2, send_before=closes))
    # then the first goes out, the second fails with its reason, and nothing is retried
    assert sent.type == "effect.sent"
    assert len(fakes.sms.sent) == 1
    assert (expired.type, expired.data["code"]) == ("effect.failed", "expired")
    assert expired.data["reason"] == (
        f"not sent: the contact's quiet-hours window closed at {closes}"
    )


async def test_a_retry_that_would_land_past_the_window_is_given_up() -> None:
    fakes, sleeps = FakeSenders(), Sleeps()
    fakes.sms.script = lambda to: Transient("twilio 503")
    closes = format_time(T0 + timedelta(seconds=2))
    # when the provider is down and the backoff runs past the window's close
    [failed] = await processor(fakes, sleeps).handle(sms(send_before=closes))
    # then the effect fails as expired rather than trying again into the quiet hours
    assert failed.data["code"] == "expired"
    assert sleeps.delays == [0.5, 1.0]  # tried at 0, 0.5 and 1.5 s; 3.5 s would be past 2 s
    assert len(fakes.sms.sent) == 3
    # and says so: the window had not closed yet when it was given up
    assert failed.data["reason"] == (
        f"not sent: a retry would come after the contact's quiet hours close at {closes}"
    )


async def test_a_text_already_too_late_takes_no_turn_on_its_line() -> None:
    # given a line paced at one text a second, a text past its window and a fresh one
    fakes, sleeps = FakeSenders(), Sleeps()
    limiter = LineRateLimiter(1.0, 1, monotonic=lambda: 0.0, sleep=sleeps)
    effects = processor(fakes, sleeps, limiter=limiter)
    [expired] = await effects.handle(sms(1, send_before=format_time(T0)))
    [sent] = await effects.handle(sms(2))
    # then the late one fails without the line's free turn, and the fresh one waits for none
    assert (expired.data["code"], sent.type) == ("expired", "effect.sent")
    assert sleeps.delays == []


async def test_a_send_before_that_is_no_time_is_refused() -> None:
    fakes, sleeps = FakeSenders(), Sleeps()
    [failed] = await processor(fakes, sleeps).handle(sms(send_before="tonight"))
    assert failed.data["code"] == "invalid_command"
    assert "data.send_before" in failed.data["reason"]
    assert fakes.sms.sent == []


def test_every_effect_command_has_a_planner() -> None:
    assert set(_PLANNERS) == set(EFFECT_TYPES)
