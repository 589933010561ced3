"""The real sendgrid SDK, pointed at the fake SendGrid server, through the processor."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from aiohttp import web

from effects.fakes.senders import FakeSenders
from effects.fakes.sendgrid_server import (
    API_KEY,
    REJECTED_ADDRESS,
    THROTTLED_ONCE_ADDRESS,
    FakeSendGridServer,
    SendGridFailure,
)
from effects.ledger_memory import InMemoryLedger
from effects.mail import SendGridEmailSender, footer
from effects.processor import CredentialsRefused, EffectProcessor
from effects.retry import RetryPolicy
from tests.effects.helpers import Sleeps, command, types_of

ADDRESS = "Dripstream Inc., 1 Main St, Springfield, IL 62701, USA"


def processor(
    sendgrid: FakeSendGridServer | str,
    sleeps: Sleeps,
    api_key: str = API_KEY,
    *,
    timeout: float = 5.0,
) -> EffectProcessor:
    """The processor with the real SDK pointed at `sendgrid` (the fake, or any URL)."""
    sender = SendGridEmailSender(
        api_key=api_key,
        api_base=sendgrid if isinstance(sendgrid, str) else sendgrid.url,
        default_from="hello@dripstream.example",
        unsubscribe_group_id=4242,
        postal_address=ADDRESS,
        timeout=timeout,
        clock=sleeps.clock,
    )
    return EffectProcessor(
        ledger=InMemoryLedger(),
        senders=replace(FakeSenders().senders(), email=sender),
        clock=sleeps.clock,
        retry=RetryPolicy(max_attempts=5),
        sleep=sleeps,
        rand=lambda: 0.5,
    )


async def test_email_to_a_contact_has_the_unsubscribe_group_and_postal_footer(
    sendgrid: FakeSendGridServer,
) -> None:
    sleeps = Sleeps()
    # when
    [sent] = await processor(sendgrid, sleeps).handle(
        command("email.send", to="ann@example.com", subject="Welcome", body="Hi Ann,\nthanks!")
    )
    # then
    [mail] = sendgrid.mails
    assert mail.recipients == ["ann@example.com"]
    assert mail.body["from"] == {"email": "hello@dripstream.example"}
    assert mail.body["subject"] == "Welcome"
    assert mail.body["asm"] == {"group_id": 4242}
    assert mail.effect_id == "fx:welcome:c-1:1:s1:1"
    assert mail.text.startswith("Hi Ann,\nthanks!\n\n--\n")
    assert ADDRESS in mail.text
    assert "<%asm_group_unsubscribe_raw_url%>" in mail.text
    assert sent.type == "effect.sent"
    assert sent.data["provider"] == "sendgrid"
    assert sent.data["provider_id"] == mail.message_id


async def test_a_from_address_in_the_command_wins(sendgrid: FakeSendGridServer) -> None:
    await processor(sendgrid, Sleeps()).handle(
        command(
            "email.send",
            to="ann@example.com",
            subject="Hi",
            body="x",
            from_email="sam@example.com",
        )
    )
    assert sendgrid.mails[0].body["from"] == {"email": "sam@example.com"}


async def test_a_notification_to_a_user_has_neither_footer_nor_group(
    sendgrid: FakeSendGridServer,
) -> None:
    notify = command("notify.email", to="sam@example.com", subject="New lead", body="Ann, +1212")
    assert types_of(await processor(sendgrid, Sleeps()).handle(notify)) == ["effect.sent"]
    [mail] = sendgrid.mails
    assert "asm" not in mail.body
    assert mail.text == "Ann, +1212"
    assert mail.effect_id is not None


async def test_a_throttled_send_waits_the_retry_after(sendgrid: FakeSendGridServer) -> None:
    sleeps = Sleeps()
    events = await processor(sendgrid, sleeps).handle(
        command("email.send", to=THROTTLED_ONCE_ADDRESS, subject="Hi", body="x")
    )
    assert types_of(events) == ["effect.sent"]
    assert sleeps.delays == [2.0]  # the fake's Retry-After: 2
    assert len(sendgrid.mails) == 2
    assert sendgrid.accepted_by_effect == {"fx:welcome:c-1:1:s1:1": 1}


async def test_a_refused_address_fails_without_retry(sendgrid: FakeSendGridServer) -> None:
    [failed] = await processor(sendgrid, Sleeps()).handle(
        command("email.send", to=REJECTED_ADDRESS, subject="Hi", body="x")
    )
    assert failed.type == "effect.failed"
    assert failed.data["code"] == "400"
    assert "valid address" in failed.data["reason"]
    assert len(sendgrid.mails) == 1


async def test_a_bad_api_key_fails_no_mail_and_stops_the_processor(
    sendgrid: FakeSendGridServer,
) -> None:
    effects = processor(sendgrid, Sleeps(), api_key="SG.wrong")
    assert (
        await effects.handle(command("email.send", to="ann@example.com", subject="Hi", body="x"))
        == []
    )
    with pytest.raises(CredentialsRefused, match="sendgrid 401"):
        effects.check_credentials()
    assert sendgrid.accepted() == []


@pytest.mark.parametrize(
    "to", ["not an address", "ann@example", "ann@@example.com", "ann@example.com\r\nBcc: x@y.io"]
)
async def test_a_contact_email_to_no_address_fails_as_invalid_not_unknown(
    sendgrid: FakeSendGridServer, to: str
) -> None:
    # given a contact whose e-mail upstream is not an address (the engine passes it on)
    effects = processor(sendgrid, Sleeps())
    [failed] = await effects.handle(command("email.send", to=to, subject="Hi", body="x"))
    # then it failed, saying why: nothing went out, so it is no `effect.unknown`
    assert (failed.type, failed.data["code"]) == ("effect.failed", "invalid_command")
    assert failed.data["reason"] == f"data.to: is not an e-mail address: {to!r}"
    assert sendgrid.accepted() == []


@pytest.mark.parametrize("kind", ["email.send", "notify.email"])
async def test_each_email_effect_reaches_sendgrid_at_most_once(
    sendgrid: FakeSendGridServer, kind: str
) -> None:
    effects = processor(sendgrid, Sleeps())
    mail = command(kind, to="ann@example.com", subject="Hi", body="x")
    await effects.handle_batch([mail, mail])
    await effects.handle(mail)
    assert sendgrid.accepted_by_effect == {"fx:welcome:c-1:1:s1:1": 1}


async def test_a_ring_group_email_is_one_mail_with_a_personalization_per_member(
    sendgrid: FakeSendGridServer,
) -> None:
    notify = command(
        "notify.email",
        to="rg-sales",
        ring_group_emails=["sam@example.com", "kim@example.com"],
        subject="New lead",
        body="Ann Lee, +12125550101",
    )
    assert types_of(await processor(sendgrid, Sleeps()).handle(notify)) == ["effect.sent"]
    [mail] = sendgrid.mails
    assert sorted(p["to"][0]["email"] for p in mail.body["personalizations"]) == [
        "kim@example.com",
        "sam@example.com",
    ]
    assert all(len(p["to"]) == 1 for p in mail.body["personalizations"])
    assert mail.effect_id == "fx:welcome:c-1:1:s1:1"


def test_a_footer_with_nothing_to_say_is_left_out() -> None:
    assert footer("", has_unsubscribe_group=False) == ""
    assert footer("1 Main St", has_unsubscribe_group=False) == "\n\n--\n1 Main St"
    assert footer("", has_unsubscribe_group=True).startswith("\n\n--\nUnsubscribe: ")


async def test_no_answer_in_time_is_unknown_and_not_sent_again() -> None:
    # given a SendGrid that takes a second to answer, and a client that waits 0.2 s: the
    # mail may have been accepted, and two mails are worse than a late one
    sleeps = Sleeps()
    async with FakeSendGridServer(latency=1.0) as slow:
        effects = processor(slow, sleeps, timeout=0.2)
        mail = command("email.send", to="ann@example.com", subject="Hi", body="b")
        [outcome] = await effects.handle(mail)
        assert outcome.type == "effect.unknown"
        assert outcome.data["reason"].startswith("no answer from SendGrid")
        assert sleeps.delays == []
        assert types_of(await effects.handle(mail)) == ["effect.unknown"]
        assert len(slow.mails) == 1


async def test_a_refused_connection_is_retried_then_fails() -> None:
    # given a port nobody listens on: the mail never left, so trying again is safe
    probe = await asyncio.start_server(lambda _r, _w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    sleeps = Sleeps()
    effects = processor(f"http://127.0.0.1:{port}", sleeps, timeout=0.2)
    mail = command("email.send", to="ann@example.com", subject="Hi", body="b")
    [outcome] = await effects.handle(mail)
    assert outcome.type == "effect.failed"
    assert "refused" in outcome.data["reason"]
    assert len(sleeps.delays) == 4  # five attempts


async def test_a_name_that_does_not_resolve_is_retried_then_fails_not_unknown() -> None:
    # given an API base whose name resolves nowhere: the mail never left, so it is no
    # `effect.unknown` (nothing would ever reconcile it) and trying again is safe
    sleeps = Sleeps()
    effects = processor("http://sendgrid-down.invalid", sleeps, timeout=0.5)
    mail = command("email.send", to="ann@example.com", subject="Hi", body="b")
    [outcome] = await effects.handle(mail)
    assert outcome.type == "effect.failed"
    assert "could not reach SendGrid" in outcome.data["reason"]
    assert len(sleeps.delays) == 4  # five attempts


@pytest.mark.parametrize(("status", "outcome"), [(503, "effect.sent"), (502, "effect.unknown")])
async def test_a_503_is_retried_and_a_502_is_in_doubt(
    sendgrid: FakeSendGridServer, status: int, outcome: str
) -> None:
    # 503: SendGrid turned the mail away while unavailable; 502: a gateway's answer, the
    # mail may have been taken behind it, and two mails are worse than a late one
    sleeps = Sleeps()
    sendgrid.fail_first("ann@example.com", SendGridFailure(status, "try later"))
    effects = processor(sendgrid, sleeps)
    events = await effects.handle(
        command("email.send", to="ann@example.com", subject="Hi", body="b")
    )
    assert types_of(events) == [outcome]
    assert len(sendgrid.mails) == (2 if status == 503 else 1)


@pytest.mark.parametrize("status", [301, 302, 303, 307])
async def test_a_redirect_is_refused_and_the_key_goes_nowhere_else(status: int) -> None:
    # given an API base that redirects the mail send elsewhere, which would say 2xx: the
    # SDK's urllib followed it as a GET without the mail, with the Bearer key, and the
    # 2xx there was taken for a mail accepted
    reached: list[tuple[str, str | None]] = []

    async def redirect(_request: web.Request) -> web.Response:
        return web.Response(status=status, headers={"Location": f"{base}/elsewhere"})

    async def elsewhere(request: web.Request) -> web.Response:
        reached.append((request.method, request.headers.get("Authorization")))
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/v3/mail/send", redirect)
    app.router.add_route("*", "/elsewhere", elsewhere)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    try:
        sleeps = Sleeps()
        mail = command("email.send", to="ann@example.com", subject="Hi", body="b")
        [outcome] = await processor(base, sleeps).handle(mail)
    finally:
        await runner.cleanup()
    # then the send fails on the redirect, and nothing reached the other address
    assert outcome.type == "effect.failed"
    assert str(status) in outcome.data["reason"]
    assert reached == []
