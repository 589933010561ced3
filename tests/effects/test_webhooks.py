"""Signed webhooks: the Standard Webhooks signature, retries, redirects, and the SSRF guard."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import replace

import pytest

from effects.fakes.senders import FakeSenders
from effects.fakes.webhook_receiver import FakeWebhookReceiver, ScriptedResponse
from effects.ledger_memory import InMemoryLedger
from effects.processor import EffectProcessor
from effects.retry import RetryPolicy
from effects.webhooks import (
    AddressRefused,
    GuardedResolver,
    HttpWebhookPoster,
    NetworkGuard,
    secret_key,
)
from tests.effects.helpers import Sleeps, command, types_of

# A Standard Webhooks secret: "whsec_" + base64 of the key bytes.
KEY = b"0123456789abcdef0123456789abcdef"
SECRET = "whsec_" + base64.b64encode(KEY).decode()


def processor(
    sleeps: Sleeps, allowlist: tuple[str, ...] = ("127.0.0.1",), secret: str | None = SECRET
) -> tuple[EffectProcessor, HttpWebhookPoster]:
    poster = HttpWebhookPoster(
        guard=NetworkGuard(allowlist), clock=sleeps.clock, timeout=2.0, secret=secret
    )
    effects = EffectProcessor(
        ledger=InMemoryLedger(),
        senders=replace(FakeSenders().senders(), webhooks=poster),
        clock=sleeps.clock,
        retry=RetryPolicy(max_attempts=5, base_seconds=1.0, cap_seconds=60.0),
        sleep=sleeps,
        rand=lambda: 0.5,
    )
    return effects, poster


def hook(url: str, n: int = 1) -> object:
    return command(
        "webhook.post", n, url=url, payload={"contact": {"id": "c-1", "first_name": "Ann"}}
    )


async def test_the_signature_verifies_with_the_standard_webhooks_algorithm(
    receiver: FakeWebhookReceiver,
) -> None:
    sleeps = Sleeps()
    effects, poster = processor(sleeps)
    # when
    [sent] = await effects.handle(hook(f"{receiver.url}/hooks/crm"))  # type: ignore[arg-type]
    await poster.close()
    # then the receiver can check it as the spec says, from the raw body
    [received] = receiver.received
    headers = received.headers
    assert received.path == "/hooks/crm"
    assert headers["content-type"] == "application/json"
    assert headers["webhook-id"] == "fx:welcome:c-1:1:s1:1"
    assert headers["webhook-timestamp"] == str(int(sleeps.clock.now.timestamp()))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + received.body
    expected = base64.b64encode(hmac.new(KEY, signed, hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == f"v1,{expected}"
    assert received.body == b'{"contact":{"id":"c-1","first_name":"Ann"}}'
    assert sent.type == "effect.sent"
    assert sent.data["provider_id"] == "http-200"


def test_a_secret_without_the_whsec_prefix_is_the_raw_key() -> None:
    assert secret_key(SECRET) == KEY
    assert secret_key("plain-secret") == b"plain-secret"


async def test_an_unsigned_hook_has_no_signature(receiver: FakeWebhookReceiver) -> None:
    effects, poster = processor(Sleeps(), secret=None)
    await effects.handle(hook(receiver.url))  # type: ignore[arg-type]
    await poster.close()
    assert "webhook-signature" not in receiver.received[0].headers


async def test_a_503_is_retried_with_backoff_then_succeeds(receiver: FakeWebhookReceiver) -> None:
    receiver.respond(ScriptedResponse(503), ScriptedResponse(503))
    sleeps = Sleeps()
    effects, poster = processor(sleeps)
    events = await effects.handle(hook(receiver.url))  # type: ignore[arg-type]
    await poster.close()
    assert types_of(events) == ["effect.sent"]
    assert len(receiver.received) == 3
    assert sleeps.delays == [0.5, 1.0]  # full jitter at 0.5 of 1 s, then of 2 s
    # the same webhook-id on every try: the receiver deduplicates on it
    assert {r.headers["webhook-id"] for r in receiver.received} == {"fx:welcome:c-1:1:s1:1"}
    # each try is signed afresh with its own timestamp
    stamps = [int(r.headers["webhook-timestamp"]) for r in receiver.received]
    assert stamps == sorted(stamps)
    assert stamps[0] < stamps[-1]


async def test_retry_after_is_honoured(receiver: FakeWebhookReceiver) -> None:
    receiver.respond(ScriptedResponse(429, {"Retry-After": "30"}))
    sleeps = Sleeps()
    effects, poster = processor(sleeps)
    events = await effects.handle(hook(receiver.url))  # type: ignore[arg-type]
    await poster.close()
    assert types_of(events) == ["effect.sent"]
    assert sleeps.delays == [30.0]


async def test_a_bounded_schedule_then_failed(receiver: FakeWebhookReceiver) -> None:
    receiver.respond(*[ScriptedResponse(500)] * 10)
    sleeps = Sleeps()
    effects, poster = processor(sleeps)
    [failed] = await effects.handle(hook(receiver.url))  # type: ignore[arg-type]
    await poster.close()
    assert failed.type == "effect.failed"
    assert failed.data["reason"] == "gave up after 5 attempts: http 500"
    assert len(receiver.received) == 5
    assert sleeps.delays == [0.5, 1.0, 2.0, 4.0]


async def test_a_receiver_slower_than_the_timeout_gets_it_once_and_the_outcome_is_unknown(
    receiver: FakeWebhookReceiver,
) -> None:
    # given a receiver that answers after the poster's timeout (it may well act on the hook)
    receiver.respond(ScriptedResponse(200, delay=3.0))
    sleeps = Sleeps()
    effects, poster = processor(sleeps)  # a 2 s timeout
    # when
    [outcome] = await effects.handle(hook(receiver.url))  # type: ignore[arg-type]
    await poster.close()
    # then it is not posted again, and said to be in doubt rather than failed
    assert len(receiver.received) == 1
    assert outcome.type == "effect.unknown"
    assert outcome.data["reason"] == "no answer from 127.0.0.1 within 2 s"
    assert sleeps.delays == []


async def test_a_client_error_is_not_retried(receiver: FakeWebhookReceiver) -> None:
    receiver.respond(ScriptedResponse(410))
    effects, poster = processor(Sleeps())
    [failed] = await effects.handle(hook(receiver.url))  # type: ignore[arg-type]
    await poster.close()
    assert failed.data["code"] == "410"
    assert len(receiver.received) == 1


async def test_a_redirect_is_not_followed(receiver: FakeWebhookReceiver) -> None:
    receiver.respond(ScriptedResponse(302, {"Location": f"{receiver.url}/elsewhere"}))
    effects, poster = processor(Sleeps())
    [failed] = await effects.handle(hook(f"{receiver.url}/start"))  # type: ignore[arg-type]
    await poster.close()
    assert failed.type == "effect.failed"
    assert failed.data["reason"] == f"redirect not followed: 302 to {receiver.url}/elsewhere"
    assert [r.path for r in receiver.received] == ["/start"]


async def test_a_redirect_to_the_metadata_service_is_not_followed(
    receiver: FakeWebhookReceiver,
) -> None:
    receiver.respond(
        ScriptedResponse(307, {"Location": "http://169.254.169.254/latest/meta-data/"})
    )
    effects, poster = processor(Sleeps())
    [failed] = await effects.handle(hook(receiver.url))  # type: ignore[arg-type]
    await poster.close()
    assert failed.type == "effect.failed"
    assert "169.254.169.254" in failed.data["reason"]
    assert len(receiver.received) == 1


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("http://127.0.0.1:{port}/x", "127.0.0.1"),
        ("http://10.0.0.1/x", "10.0.0.1"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("http://localhost:{port}/x", "localhost resolves to"),
        ("http://[::1]:{port}/x", "::1"),
        ("http://[::ffff:127.0.0.1]:{port}/x", "::ffff:7f00:1"),
        ("http://0.0.0.0:{port}/x", "0.0.0.0"),
        ("http://224.0.0.1/x", "224.0.0.1"),
        ("http://192.168.1.1/x", "192.168.1.1"),
        ("http://100.64.0.1/x", "100.64.0.1"),
        ("http://127.1:{port}/x", "127.1 resolves to 127.0.0.1"),
    ],
)
async def test_internal_addresses_are_refused(
    receiver: FakeWebhookReceiver, url: str, refused: str
) -> None:
    sleeps = Sleeps()
    effects, poster = processor(sleeps, allowlist=())
    [failed] = await effects.handle(hook(url.format(port=receiver.port)))  # type: ignore[arg-type]
    await poster.close()
    assert failed.type == "effect.failed"
    assert failed.data["code"] == "address_refused"
    assert refused in failed.data["reason"]
    assert receiver.received == []
    assert sleeps.delays == []  # a refusal is final


async def test_not_http_is_refused() -> None:
    effects, poster = processor(Sleeps(), allowlist=())
    [failed] = await effects.handle(hook("file:///etc/passwd"))  # type: ignore[arg-type]
    await poster.close()
    assert failed.data["code"] == "bad_url"


async def test_the_allow_list_admits_a_named_host_or_network(receiver: FakeWebhookReceiver) -> None:
    by_name = NetworkGuard(["LocalHost"])
    assert await by_name.check("localhost", receiver.port)
    by_network = NetworkGuard(["10.20.0.0/16"])
    assert await by_network.check("10.20.3.4", 80) == ["10.20.3.4"]
    with pytest.raises(AddressRefused):
        await by_network.check("10.21.0.1", 80)


async def test_every_dns_answer_is_checked_at_connect_time_too() -> None:
    # a name whose answer is public when checked and loopback when connecting (rebinding)
    answers = [["93.184.216.34"], ["127.0.0.1"]]

    async def rebinding(host: str, port: int) -> list[str]:
        return answers.pop(0)

    guard = NetworkGuard((), resolve=rebinding)
    assert await guard.check("rebind.example", 443) == ["93.184.216.34"]
    with pytest.raises(AddressRefused, match=r"rebind\.example resolves to 127\.0\.0\.1"):
        await GuardedResolver(guard).resolve("rebind.example", 443)


async def test_a_name_that_does_not_resolve_is_refused() -> None:
    async def nxdomain(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    with pytest.raises(AddressRefused, match="does not resolve"):
        await NetworkGuard((), resolve=nxdomain).check("nowhere.invalid", 80)
