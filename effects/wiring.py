"""Builds the real processor from settings: ledger, Twilio, SendGrid or Mailgun, webhooks,
limiters.

Nothing here runs at import time; `open_runtime` connects, `Runtime.close` lets go.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from effects.ledger import Ledger
from effects.ledger_memory import InMemoryLedger
from effects.ledger_postgres import PostgresLedger
from effects.mail import SendGridEmailSender
from effects.mailgun import MailgunEmailSender
from effects.ports import Clock, EmailSender, PowerDialerQueue, Senders
from effects.power_dialer import InMemoryPowerDialerQueue, PostgresPowerDialerQueue
from effects.processor import EffectProcessor
from effects.ratelimit import LineRateLimiter
from effects.retry import RetryPolicy
from effects.settings import MAILGUN, EffectsSettings
from effects.twilio_http import build_twilio_client, close_twilio_client
from effects.twilio_senders import TwilioCallPlacer, TwilioSmsSender, TwilioVoicemailDropper
from effects.twiml import CallbackUrls
from effects.webhooks import HttpWebhookPoster, NetworkGuard

_log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_owner_id() -> str:
    """Unique per process start: recovery tells the living from the dead by it."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass
class Runtime:
    settings: EffectsSettings
    ledger: Ledger
    processor: EffectProcessor
    clock: Clock
    _closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def close(self) -> None:
        for closer in reversed(self._closers):
            await closer()
        self._closers.clear()


async def open_runtime(
    settings: EffectsSettings,
    *,
    clock: Clock = utc_now,
    ledger: Ledger | None = None,
    senders: Senders | None = None,
    serves: str | None = None,
) -> Runtime:
    """The processor over the configured ledger (PostgreSQL when DATABASE_URL is set, else in
    memory) and the real providers (unless `senders` is given). `serves`: the topic prefix
    whose commands it carries out, which the ledger's schema is then kept for."""
    closers: list[Callable[[], Awaitable[None]]] = []
    # The SDKs' blocking calls (SendGrid, and Twilio on the `threads` transport) run in the
    # loop's default executor: as many threads as sends in progress.
    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(max_workers=settings.concurrency + 4)
    loop.set_default_executor(executor)

    async def let_threads_go() -> None:
        # A worker that starts again after an outage sets a new one: the old threads end.
        executor.shutdown(wait=False)

    closers.append(let_threads_go)
    owner = new_owner_id()
    if ledger is None:
        if settings.database_url:
            ledger = PostgresLedger(
                settings.database_url,
                owner,
                pool_size=min(settings.concurrency, 16),
                schema=settings.schema,
                serves=serves,
            )
        else:
            _log.warning(
                "the effect ledger is in memory (no DATABASE_URL, or --memory-ledger), so a"
                " command carried out by an earlier run is carried out again"
            )
            ledger = InMemoryLedger(owner)
    await ledger.open()
    closers.append(ledger.close)

    if senders is None:
        senders = await _real_senders(settings, clock, closers)
    processor = EffectProcessor(
        ledger=ledger,
        senders=senders,
        clock=clock,
        retry=RetryPolicy(
            max_attempts=settings.max_attempts,
            base_seconds=settings.backoff_base_seconds,
            cap_seconds=settings.backoff_cap_seconds,
        ),
        message_limiter=LineRateLimiter(
            settings.line_rate_per_second,
            settings.line_burst,
            monotonic=time.monotonic,
            sleep=asyncio.sleep,
        ),
        call_limiter=LineRateLimiter(
            settings.call_rate_per_second, 1, monotonic=time.monotonic, sleep=asyncio.sleep
        ),
        concurrency=settings.concurrency,
        default_from_number=settings.default_from_number,
    )
    return Runtime(settings, ledger, processor, clock, closers)


async def _real_senders(
    settings: EffectsSettings, clock: Clock, closers: list[Callable[[], Awaitable[None]]]
) -> Senders:
    for missing in missing_credentials(settings):
        # Said once at the start, rather than as each send fails against the provider.
        _log.warning("%s is not set: the provider will refuse these sends", missing)
    if not settings.webhook_secret:
        _log.warning("EFFECTS_WEBHOOK_SECRET is not set: webhooks go out unsigned")
    twilio = build_twilio_client(
        account_sid=settings.twilio_account_sid,
        auth_token=settings.twilio_auth_token,
        api_base=settings.twilio_api_base,
        transport=settings.twilio_transport,
        timeout=settings.provider_timeout_seconds,
        pool_size=settings.concurrency,
    )

    async def close_twilio() -> None:
        await close_twilio_client(twilio)

    closers.append(close_twilio)
    urls = CallbackUrls(settings.public_url)
    webhooks = HttpWebhookPoster(
        guard=NetworkGuard(settings.webhook_allowlist),
        clock=clock,
        secret=settings.webhook_secret,
        timeout=settings.provider_timeout_seconds,
    )
    closers.append(webhooks.close)
    power_dialer: PowerDialerQueue
    if settings.database_url:
        queue = PostgresPowerDialerQueue(settings.database_url, settings.schema)
        await queue.open()
        closers.append(queue.close)
        power_dialer = queue
    else:
        power_dialer = InMemoryPowerDialerQueue()
    return Senders(
        sms=TwilioSmsSender(twilio, urls),
        calls=TwilioCallPlacer(twilio, urls),
        voicemail=TwilioVoicemailDropper(twilio, urls),
        email=email_sender(settings, clock, closers),
        webhooks=webhooks,
        power_dialer=power_dialer,
    )


def email_sender(
    settings: EffectsSettings, clock: Clock, closers: list[Callable[[], Awaitable[None]]]
) -> EmailSender:
    """The sender of the provider the settings choose (`chosen_email_provider`)."""
    if not settings.email_postal_address:
        _log.warning("EFFECTS_POSTAL_ADDRESS is empty: contact e-mail lacks a postal address")
    if settings.chosen_email_provider == MAILGUN:
        _log.info(
            "e-mail goes through Mailgun, domain %s at %s",
            settings.mailgun_domain,
            settings.mailgun_api_base,
        )
        if not settings.mailgun_webhook_signing_key:
            _log.warning(
                "MAILGUN_WEBHOOK_SIGNING_KEY is not set: /mailgun/events and /mailgun/inbound"
                " refuse everything, so an e-mail in doubt stays unknown and no lead comes in"
                " through Mailgun"
            )
        mailgun = MailgunEmailSender(
            api_key=settings.mailgun_api_key,
            domain=settings.mailgun_domain,
            api_base=settings.mailgun_api_base,
            default_from=settings.email_from,
            postal_address=settings.email_postal_address,
            unsubscribe_link=settings.mailgun_unsubscribe_link,
            timeout=settings.provider_timeout_seconds,
            clock=clock,
            pool_size=settings.concurrency,
        )
        closers.append(mailgun.close)
        return mailgun
    return SendGridEmailSender(
        api_key=settings.sendgrid_api_key,
        api_base=settings.sendgrid_api_base,
        default_from=settings.email_from,
        unsubscribe_group_id=settings.email_unsubscribe_group_id,
        postal_address=settings.email_postal_address,
        timeout=settings.provider_timeout_seconds,
        clock=clock,
    )


def missing_credentials(settings: EffectsSettings) -> list[str]:
    """The provider credentials left empty, by their environment variable. (Mailgun's are
    not among them: `EffectsSettings.check` refuses to start without them.)"""
    wanted = {
        "TWILIO_ACCOUNT_SID": settings.twilio_account_sid,
        "TWILIO_AUTH_TOKEN": settings.twilio_auth_token,
    }
    if settings.chosen_email_provider != MAILGUN:
        wanted["SENDGRID_API_KEY"] = settings.sendgrid_api_key
    return [name for name, value in wanted.items() if not value]
