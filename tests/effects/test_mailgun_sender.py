"""The Mailgun sender against the fake Mailgun server, through the processor: what it posts,
and how each answer becomes sent, failed, retried or unknown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import orjson
import pytest

from effects.fakes.mailgun_server import (
    API_KEY,
    DOMAIN,
    DOWN_ADDRESS,
    REJECTED_ADDRESS,
    THROTTLED_ONCE_ADDRESS,
    FakeMailgunServer,
    MailgunFailure,
)
from effects.fakes.senders import FakeSenders
from effects.ledger_memory import InMemoryLedger
from effects.mailgun import MailgunEmailSender
from effects.processor import CredentialsRefused, EffectProcessor
from effects.retry import RetryPolicy
from schemas.envelope import CloudEvent
from tests.effects.helpers import Sleeps, command, types_of

ADDRESS = "Dripstream Inc., 1 Main St, Springfield, IL 62701, USA"
FX = "fx:welcome:c-1:1:s1:1"

Build = Callable[..., EffectProcessor]


@pytest.fixture
async def processor() -> AsyncIterator[Build]:
    """Makes the processor with a Mailgun sender pointed at a fake (or any URL); the
    senders' connections are closed after the test."""
    made: list[MailgunEmailSender] = []

    def build(
        mailgun: FakeMailgunServer | str,
        sleeps: Sleeps,
        *,
        api_key: str = API_KEY,
        domain: str = DOMAIN,
        timeout: float = 5.0,
        unsubscribe_link: bool = True,
    ) -> EffectProcessor:
        sender = MailgunEmailSender(
            api_key=api_key,
            domain=domain,
            api_base=mailgun if isinstance(mailgun, str) else mailgun.url,
            default_from="hello@mg.example.com",
            postal_address=ADDRESS,
            unsubscribe_link=unsubscribe_link,
            timeout=timeout,
            clock=sleeps.clock,
        )
        made.append(sender)
        return EffectProcessor(
            ledger=InMemoryLedger(),
            senders=replace(FakeSenders().senders(), email=sender),
            clock=sleeps.clock,
            retry=RetryPolicy(max_attempts=5),
            sleep=sleeps,
            rand=lambda: 0.5,
        )

    yield build
    for sender in made:
        await sender.close()


def mail(to: str = "ann@example.com", body: str = "Hi") -> CloudEvent:
    return command("email.send", to=to, subject="Welcome", body=body)


async def test_a_contact_email_goes_out_with_its_effect_id_and_postal_footer(
    mailgun: FakeMailgunServer, processor: Build
) -> None:
    # when an e-mail to a contact is carried out
    [sent] = await processor(mailgun, Sleeps()).handle(
        command("email.send", to="ann@example.com", subject="Welcome", body="Hi Ann,\nthanks!")
    )
    # then Mailgun got one message with the effect id as a custom variable
    [message] = mailgun.messages
    assert message.recipients == ["ann@example.com"]
    assert message.value("from") == "hello@mg.example.com"
    assert message.value("subject") == "Welcome"
    assert message.value("v:effect_id") == FX
    text = message.value("text") or ""
    assert text.startswith("Hi Ann,\nthanks!\n\n--\n")
    assert ADDRESS in text
    assert "Unsubscribe: %unsubscribe_url%" in text
    assert message.value("recipient-variables") is None  # one recipient: no batch
    # and the outcome names Mailgun and the id it gave, without its angle brackets
    assert sent.type == "effect.sent"
    assert sent.data["provider"] == "mailgun"
    assert sent.data["provider_id"] == message.message_id
    assert sent.data["provider_id"].endswith(f"@{DOMAIN}")


async def test_no_unsubscribe_placeholder_unless_the_domain_tracks_unsubscribes(
    mailgun: FakeMailgunServer, processor: Build
) -> None:
    await processor(mailgun, Sleeps(), unsubscribe_link=False).handle(mail(body="Hi"))
    text = mailgun.messages[0].value("text") or ""
    assert "%unsubscribe_url%" not in text
    assert text.endswith(ADDRESS)


async def test_a_notification_has_no_footer_and_a_from_in_the_command_wins(
    mailgun: FakeMailgunServer, processor: Build
) -> None:
    notify = command(
        "notify.email",
        to="sam@example.com",
        subject="New lead",
        body="Ann, +1212",
        from_email="team@mg.example.com",
    )
    assert types_of(await processor(mailgun, Sleeps()).handle(notify)) == ["effect.sent"]
    [message] = mailgun.messages
    assert message.value("text") == "Ann, +1212"
    assert message.value("from") == "team@mg.example.com"


async def test_a_ring_group_is_one_batch_where_each_member_sees_only_their_address(
    mailgun: FakeMailgunServer, processor: Build
) -> None:
    notify = command(
        "notify.email",
        to="rg-sales",
        ring_group_emails=["sam@example.com", "kim@example.com"],
        subject="New lead",
        body="Ann Lee",
    )
    assert types_of(await processor(mailgun, Sleeps()).handle(notify)) == ["effect.sent"]
    [message] = mailgun.messages
    assert message.recipients == ["sam@example.com", "kim@example.com"]
    variables = orjson.loads(message.value("recipient-variables") or "null")
    assert variables == {"sam@example.com": {}, "kim@example.com": {}}


async def test_a_refused_address_fails_with_mailguns_message_and_no_retry(
    mailgun: FakeMailgunServer, processor: Build
) -> None:
    sleeps = Sleeps()
    [failed] = await processor(mailgun, sleeps).handle(mail(REJECTED_ADDRESS, body="x"))
    assert failed.type == "effect.failed"
    assert failed.data["code"] == "400"
    assert failed.data["reason"] == "mailgun 400: to parameter is not a valid address."
    assert len(mailgun.messages) == 1
    assert sleeps.delays == []


@pytest.mark.parametrize(
    ("setting", "said"),
    [
        # every mail goes to the one domain's URL: a wrong MAILGUN_DOMAIN refuses them all
        ({"domain": "other.example.com"}, "mailgun 404: Domain not found: other"),
        ({"api_key": "wrong-key"}, "mailgun 401"),
    ],
)
async def test_a_bad_key_or_domain_fails_no_mail_and_stops_the_processor(
    mailgun: FakeMailgunServer, processor: Build, setting: dict[str, str], said: str
) -> None:
    effects = processor(mailgun, Sleeps(), **setting)
    assert await effects.handle(mail(body="x")) == []
    with pytest.raises(CredentialsRefused, match=said):
        effects.check_credentials()
    assert mailgun.accepted() == []


async def test_a_throttled_send_waits_the_retry_after_then_goes_out_once(
    mailgun: FakeMailgunServer, processor: Build
) -> None:
    sleeps = Sleeps()
    events = await processor(mailgun, sleeps).handle(mail(THROTTLED_ONCE_ADDRESS, body="x"))
    assert types_of(events) == ["effect.sent"]
    assert sleeps.delays == [2.0]  # the fake's Retry-After: 2
    assert len(mailgun.messages) == 2
    assert mailgun.accepted_by_effect == {FX: 1}


async def test_a_5xx_is_retried_after_its_retry_after(
    mailgun: FakeMailgunServer, processor: Build
) -> None:
    # given Mailgun down for one request, asking to come back in 7 s
    mailgun.fail_first("ann@example.com", MailgunFailure(503, "Service Unavailable", "7"))
    sleeps = Sleeps()
    # when the mail is sent, then it goes out on the second try, 7 s later
    assert types_of(await processor(mailgun, sleeps).handle(mail(body="x"))) == ["effect.sent"]
    assert sleeps.delays == [7.0]
    assert mailgun.accepted_by_effect == {FX: 1}


async def test_mailgun_down_for_good_fails_after_the_attempts_with_backoff(
    mailgun: FakeMailgunServer, processor: Build
) -> None:
    sleeps = Sleeps()
    [failed] = await processor(mailgun, sleeps).handle(mail(DOWN_ADDRESS, body="x"))
    assert failed.type == "effect.failed"
    assert failed.data["code"] == "503"
    assert failed.data["reason"].startswith("gave up after 5 attempts: mailgun 503")
    assert sleeps.delays == [0.5, 1.0, 2.0, 4.0]  # full jitter at 0.5: half of 1, 2, 4, 8 s
    assert len(mailgun.messages) == 5


async def test_no_answer_in_time_is_unknown_and_never_sent_again(processor: Build) -> None:
    # given a Mailgun that takes a second to answer and a client that waits 0.2 s: the
    # message may be queued, and two mails are worse than a late one
    sleeps = Sleeps()
    async with FakeMailgunServer(latency=1.0) as slow:
        effects = processor(slow, sleeps, timeout=0.2)
        email = mail(body="b")
        # when it is sent, and the same command comes again
        [outcome] = await effects.handle(email)
        again = await effects.handle(email)
        # then it is unknown, not retried, and reached Mailgun once
        assert outcome.type == "effect.unknown"
        assert outcome.data["reason"].startswith("no answer from Mailgun")
        assert types_of(again) == ["effect.unknown"]
        assert sleeps.delays == []
        assert len(slow.messages) == 1


async def test_a_refused_connection_is_retried_then_fails(processor: Build) -> None:
    # given a port nobody listens on: the request never left, so trying again is safe
    probe = await asyncio.start_server(lambda _r, _w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    sleeps = Sleeps()
    effects = processor(f"http://127.0.0.1:{port}", sleeps, timeout=0.2)
    [outcome] = await effects.handle(mail(body="b"))
    assert outcome.type == "effect.failed"
    assert "could not reach Mailgun" in outcome.data["reason"]
    assert len(sleeps.delays) == 4  # five attempts


@pytest.mark.parametrize("kind", ["email.send", "notify.email"])
async def test_each_email_effect_reaches_mailgun_at_most_once(
    mailgun: FakeMailgunServer, processor: Build, kind: str
) -> None:
    effects = processor(mailgun, Sleeps())
    email = command(kind, to="ann@example.com", subject="Hi", body="x")
    await effects.handle_batch([email, email])
    await effects.handle(email)
    assert mailgun.accepted_by_effect == {FX: 1}
