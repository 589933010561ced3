"""The effect processor: claim in the ledger, carry out, record, answer with outcome events.

Record first, act after: a command is claimed (`pending`) and marked `in_flight` before its
provider is called, and its result is recorded before the outcome leaves. A redelivered
command finds its row and is not carried out again; if the row is finished, the same outcome
events (same ids) are emitted again, so a crash between recording and publishing loses none.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aggregates.mail_addresses import parsed_address
from effects import commands as kinds
from effects import outcomes
from effects.commands import CommandRejected, EffectCommand, effect_id_of, read_command
from effects.fan_out import to_each
from effects.ledger import ABANDONED, FAILED, SENT, UNDELIVERED, UNKNOWN, Ledger, LedgerEntry
from effects.ports import (
    Ambiguous,
    CallRequest,
    Clock,
    Delivered,
    EffectId,
    EmailMessage,
    Random,
    Rejected,
    Senders,
    SendResult,
    Sleep,
    SmsMessage,
    Transient,
    VoicemailRequest,
    WebhookRequest,
)
from effects.ratelimit import LineRateLimiter
from effects.retry import RetryPolicy
from effects.twilio_http import UNSUBSCRIBED
from schemas.envelope import CloudEvent, format_time

_log = logging.getLogger(__name__)

EXPIRED = "expired"  # the code of a command that reached its send_before unsent

Action = Callable[[], Awaitable[SendResult]]

DEFAULT_DIALER_MESSAGE = (
    "To connect now, press 1. To schedule a callback, press 2. "
    "To be removed from our contact list, press 9."
)


class CredentialsRefused(Exception):  # noqa: N818 - names what happened
    """A provider refused the processor's credentials: its commands stay pending (and their
    records uncommitted) until an operator sets the right ones and starts it again."""


class RetryAbandoned(Exception):  # noqa: N818 - names what happened, not an error
    """A retry not made because the processor is stopping: the effect was put back to
    `pending` (never in flight), and its command, left uncommitted, comes to the next
    processor, which tries again."""


@dataclass(frozen=True, slots=True)
class _Plan:
    action: Action
    limiter: LineRateLimiter | None = None
    limiter_key: str = ""


class EffectProcessor:
    def __init__(
        self,
        *,
        ledger: Ledger,
        senders: Senders,
        clock: Clock,
        retry: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        rand: Random = random.random,
        message_limiter: LineRateLimiter | None = None,
        call_limiter: LineRateLimiter | None = None,
        concurrency: int = 32,
        default_from_number: str | None = None,
    ) -> None:
        self.ledger = ledger
        self._senders = senders
        self._clock = clock
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._rand = rand
        self._message_limiter = message_limiter
        self._call_limiter = call_limiter
        self._slots = asyncio.Semaphore(concurrency)
        self._default_from = default_from_number
        self._stopping = asyncio.Event()
        # Tries given another go after a refusal for now (429, 503, a connection never
        # made), counted for the metrics (`retries_total`).
        self.retries = 0
        # What a provider said when it refused our credentials: no send is tried after it.
        self.refused_credentials: str | None = None

    def stop_retrying(self) -> None:
        """From now on a send to be tried again is left for the next processor
        (RetryAbandoned) instead of waiting its backoff: a stop then waits only for the sends
        in progress, not for minutes of retries against a provider that is down."""
        self._stopping.set()

    # -- entry points ----------------------------------------------------------------------

    async def recover(self) -> list[CloudEvent]:
        """On startup (and now and then): rows left `in_flight` by a processor that is gone
        become `unknown`, each with an `effect.unknown` outcome."""
        entries = await self.ledger.recover_abandoned(self._clock())
        for entry in entries:
            _log.warning("effect %s was in flight when its processor died", entry.effect_id)
        return [
            outcomes.effect_unknown(
                entry.effect_id, entry.context, entry.error or ABANDONED, entry.updated_at
            )
            for entry in entries
        ]

    async def handle(self, command: CloudEvent) -> list[CloudEvent]:
        """Carry out one effect command at most once; the outcome events it caused.
        Raises CommandRejected, recording nothing, for a command without an effect id and
        for an event that is no effect command."""
        if command.type not in kinds.EFFECT_TYPES:
            # Its effect id is a real command's (`step.executed` names the effect it
            # caused): recorded under that id, it would make the real one a duplicate.
            raise CommandRejected("type", f"{command.type!r} is not an effect command")
        effect_id = effect_id_of(command)
        async with self._slots:
            if self.refused_credentials is not None:
                return []  # not claimed: the next processor's, with the right credentials
            if self._stopping.is_set():
                # Stopping while it waited for a slot: never claimed, so the next processor
                # (or the next run over the file) carries it out.
                raise RetryAbandoned(effect_id)
            try:
                parsed = read_command(command)
                plan = self._plan(parsed)
            except CommandRejected as error:
                return await self._reject(effect_id, command, error)
            limiter = plan.limiter
            late = parsed.send_before is not None and self._clock() >= parsed.send_before
            # A command already too late takes no turn on its line (it will not be sent):
            # the slow path fails it before any turn is taken.
            if limiter is None or (not late and limiter.try_take(plan.limiter_key)):
                # The usual case, no wait for the line: claim and mark in flight in one
                # ledger step (one round trip), then call the provider.
                attempt = await self.ledger.start(effect_id, command, self._clock())
                if attempt is None:
                    if limiter is not None:
                        limiter.give_back(plan.limiter_key)
                    return await self._replay(effect_id)
                return await self._carry_out(parsed, plan, attempt)
            # The line is busy: claim now (a duplicate is answered at once), and go in
            # flight only once the line's turn comes, so a crash while waiting leaves a
            # row that was never attempted (`pending`), not an `unknown` one.
            if not await self.ledger.claim(effect_id, command, self._clock()):
                return await self._replay(effect_id)
            return await self._carry_out(parsed, plan, None)

    async def _reject(
        self, effect_id: EffectId, command: CloudEvent, error: CommandRejected
    ) -> list[CloudEvent]:
        if not await self.ledger.claim(effect_id, command, self._clock()):
            return await self._replay(effect_id)
        now = self._clock()
        await self.ledger.record_failed(effect_id, str(error), "invalid_command", now)
        context = EffectCommand(command, effect_id).context()
        return [outcomes.effect_failed(effect_id, context, str(error), "invalid_command", now)]

    async def _replay(self, effect_id: EffectId) -> list[CloudEvent]:
        entry = await self.ledger.get(effect_id)
        return replay(entry) if entry else []

    async def handle_batch(
        self, batch: Iterable[CloudEvent], *, abandoned_ok: bool = False
    ) -> list[CloudEvent]:
        """Many commands at once, at most `concurrency` in progress; outcomes in input order.
        A send abandoned by a stop (RetryAbandoned: left pending) raises once the rest are
        done, unless `abandoned_ok` (a runner that commits nothing: the outcomes of the rest
        are wanted) or the credentials were refused (`check_credentials` says why)."""
        results = await asyncio.gather(
            *(self.handle(command) for command in batch), return_exceptions=True
        )
        failures = [result for result in results if isinstance(result, BaseException)]
        real = [failure for failure in failures if not isinstance(failure, RetryAbandoned)]
        if real:
            raise real[0]
        if failures and not abandoned_ok and self.refused_credentials is None:
            raise failures[0]
        return [event for events in results if isinstance(events, list) for event in events]

    def check_credentials(self) -> None:
        """Raise CredentialsRefused when a provider has refused our credentials."""
        if self.refused_credentials is not None:
            raise CredentialsRefused(
                f"a provider refused the credentials ({self.refused_credentials}): set the"
                " right ones (TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN, SENDGRID_API_KEY,"
                " MAILGUN_API_KEY / MAILGUN_DOMAIN) and start it again; the commands not"
                " carried out stay pending and are tried then"
            )

    # -- one command -----------------------------------------------------------------------

    async def _carry_out(
        self, command: EffectCommand, plan: _Plan, attempt: int | None
    ) -> list[CloudEvent]:
        """`attempt` is given when the ledger already holds this attempt in flight."""
        effect_id = command.effect_id
        context = command.context()
        deadline = command.send_before
        while True:
            if attempt is None:
                now = self._clock()
                if deadline is not None and now >= deadline:
                    # Before taking a turn on the line: after an outage, a backlog of texts
                    # already too late would each hold up the line's fresh ones a slot.
                    return await self._expire(effect_id, context, deadline, now)
                if plan.limiter is not None and not await plan.limiter.acquire(
                    plan.limiter_key, unless=self._stopping
                ):
                    # A stop came while it waited for its line: the row is `pending`, never
                    # attempted, and its batch stays uncommitted for the next processor (a
                    # busy line's queue took minutes to drain on a stop).
                    raise RetryAbandoned(effect_id)
                if self.refused_credentials is not None:
                    return []  # refused while it waited: left `pending`, never attempted
                attempt = await self.ledger.begin(effect_id, self._clock())
                if attempt is None:
                    return []  # taken by a concurrent delivery of the same command
            now = self._clock()
            if deadline is not None and now >= deadline:
                # Held up past the contact's quiet hours (a backlog, a wait for the line):
                # sending now would reach them when the law says not to. Failed, not late.
                return await self._expire(effect_id, context, deadline, now)
            if attempt > self._retry.max_attempts:
                now = self._clock()
                reason = f"gave up after {attempt - 1} attempts"
                _log.warning("effect %s failed: %s", effect_id, reason)
                await self.ledger.record_failed(effect_id, reason, "attempts", now)
                return [outcomes.effect_failed(effect_id, context, reason, "attempts", now)]
            try:
                result = await plan.action()
            except Exception as error:  # a bug in an adapter: whether it sent is unknown
                _log.exception("effect %s: sender raised", effect_id)
                result = Ambiguous(f"sender raised {type(error).__name__}: {error}")
            now = self._clock()
            if not isinstance(result, Transient):
                return await self._settled(effect_id, context, result, now)
            if result.credentials:
                # Each send would be refused alike: failing them one by one would fail every
                # step waiting. Left pending; the runner stops on `refused_credentials`.
                _log.error(
                    "effect %s: %s: check the provider's credentials", effect_id, result.reason
                )
                self.refused_credentials = result.reason
                self.stop_retrying()  # backoffs and line waits end now: nothing can go out
                await self.ledger.release(effect_id, result.reason, now, counted=False)
                return []
            delay = self._retry.delay(attempt, self._rand, result.retry_after)
            if delay is None:
                reason = f"gave up after {attempt} attempts: {result.reason}"
                asked, most = result.retry_after, self._retry.max_retry_after
                if asked is not None and asked > most and attempt < self._retry.max_attempts:
                    reason = (
                        f"the provider asked to wait {asked:g} s (Retry-After), longer than a"
                        f" retry may wait ({most:g} s): {result.reason}"
                    )
                # A connection never made carries no provider code: `attempts`, as above.
                code = result.code or "attempts"
                _log.warning("effect %s failed: %s", effect_id, reason)
                await self.ledger.record_failed(effect_id, reason, code, now)
                return [outcomes.effect_failed(effect_id, context, reason, code, now)]
            if deadline is not None and now + timedelta(seconds=delay) >= deadline:
                # No use waiting: the retry would land after the window closes.
                return await self._expire(effect_id, context, deadline, now, retry=True)
            _log.info("effect %s: %s; retry in %.2fs", effect_id, result.reason, delay)
            self.retries += 1
            await self.ledger.release(effect_id, result.reason, now)
            if not await self._waited(delay):
                raise RetryAbandoned(effect_id)
            attempt = None

    async def _settled(
        self,
        effect_id: EffectId,
        context: dict[str, Any],
        result: Delivered | Rejected | Ambiguous,
        now: datetime,
    ) -> list[CloudEvent]:
        """Record an answer that ends the command, and its outcome events."""
        if isinstance(result, Delivered):
            provider, provider_id = result.provider, result.provider_id
            missed = result.undelivered  # ring-group members not reached: effects.fan_out
            await self.ledger.record_sent(effect_id, provider, provider_id, now, missed)
            return [outcomes.effect_sent(effect_id, context, provider, provider_id, now, missed)]
        if isinstance(result, Rejected):
            await self.ledger.record_failed(effect_id, result.reason, result.code, now)
            events = [outcomes.effect_failed(effect_id, context, result.reason, result.code, now)]
            if result.opted_out and _to_the_contact(context):
                events.append(
                    outcomes.contact_opted_out(effect_id, context, "sms", result.reason, now)
                )
            return events
        if not await self.ledger.record_unknown(effect_id, result.reason, now):
            # A provider's callback settled it while the request went unanswered, and said
            # so (effect.sent): "unknown" now would be a last word that contradicts it.
            return []
        _log.warning("effect %s is in doubt, not sent again: %s", effect_id, result.reason)
        return [outcomes.effect_unknown(effect_id, context, result.reason, now)]

    async def _waited(self, seconds: float) -> bool:
        """Sleep before a retry; False when a stop came first."""
        if self._stopping.is_set():
            return False
        sleeping = asyncio.ensure_future(self._sleep(seconds))
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({sleeping, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:  # cancelled too: neither waiter outlives this call
            for waiter in (sleeping, stopping):
                waiter.cancel()
        return not self._stopping.is_set()

    async def _expire(
        self,
        effect_id: EffectId,
        context: dict[str, Any],
        deadline: datetime,
        now: datetime,
        *,
        retry: bool = False,
    ) -> list[CloudEvent]:
        closes = format_time(deadline)
        reason = (
            f"not sent: a retry would come after the contact's quiet hours close at {closes}"
            if retry
            else f"not sent: the contact's quiet-hours window closed at {closes}"
        )
        await self.ledger.record_failed(effect_id, reason, EXPIRED, now)
        return [outcomes.effect_failed(effect_id, context, reason, EXPIRED, now)]

    def _from_number(self, command: EffectCommand) -> str:
        number = command.optional_text("from_number") or self._default_from
        if not number:
            raise CommandRejected(
                "data.from_number", "is required (the line has no number, no default is set)"
            )
        return number

    def _plan(self, command: EffectCommand) -> _Plan:
        """What carrying out this command means; CommandRejected when it cannot be done."""
        plan = _PLANNERS.get(command.type)
        if plan is None:  # pragma: no cover - the command was checked against the registry
            raise CommandRejected("type", f"{command.type!r} is not an effect command")
        return plan(self, command)

    def _plan_message(self, command: EffectCommand) -> _Plan:
        kind = command.type
        media = command.data.get("media_url") if kind == kinds.MMS_SEND else None
        media_urls = tuple(media) if isinstance(media, list) else ((media,) if media else ())
        sms = SmsMessage(
            effect_id=command.effect_id,
            to=command.text("to"),
            from_number=self._from_number(command),
            body=command.text("body") if kind == kinds.SMS_SEND else _words(command),
            media_urls=tuple(str(url) for url in media_urls),
        )
        send = self._senders.sms.send_sms
        return _Plan(lambda: send(sms), self._message_limiter, sms.from_number)

    def _plan_notice_text(self, command: EffectCommand) -> _Plan:
        # To a ring group (its members' numbers) or to one user's number.
        from_number = self._from_number(command)
        body = command.text("body")
        texts = [
            SmsMessage(effect_id=command.effect_id, to=to, from_number=from_number, body=body)
            for to in recipients(command, "ring_group_numbers", lambda to: to.startswith("+"))
        ]
        paced = self._paced_after_first(self._senders.sms.send_sms, texts)
        return _Plan(
            lambda: to_each(texts, paced, provider="twilio", name=_recipient),
            self._message_limiter,
            from_number,
        )

    def _plan_email(self, command: EffectCommand) -> _Plan:
        to_contact = command.type == kinds.EMAIL_SEND
        to = (
            (command.text("to"),)
            if to_contact
            else tuple(recipients(command, "ring_group_emails", is_email_address))
        )
        if to_contact and not is_email_address(to[0]):
            # Refused here, not by the mail library while the request is built: that
            # raised, and a send that raised is reported unknown though nothing went out.
            raise CommandRejected("data.to", f"is not an e-mail address: {to[0]!r}")
        email = EmailMessage(
            effect_id=command.effect_id,
            to=to,
            subject=command.text("subject"),
            body=command.text("body"),
            from_email=command.optional_text("from_email"),
            commercial=to_contact,
        )
        send = self._senders.email.send_email
        return _Plan(lambda: send(email))

    def _plan_call(self, command: EffectCommand) -> _Plan:
        numbers = command.data.get("ring_group_numbers") or []
        if not numbers:
            # Both dialers connect the contact to an agent: with nobody to connect, a
            # progressive call would ring the contact and then hang up on them.
            raise CommandRejected(
                "data.ring_group_numbers",
                f"ring group {command.optional_text('ring_group')!r} has no agent numbers",
            )
        call = CallRequest(
            effect_id=command.effect_id,
            to=command.text("to"),
            from_number=self._from_number(command),
            mode=command.text("mode"),
            ring_group=command.optional_text("ring_group") or "",
            agent_numbers=tuple(str(number) for number in numbers),
            message=command.optional_text("message") or DEFAULT_DIALER_MESSAGE,
            repeat_message=bool(command.data.get("repeat_message", False)),
        )
        place = self._senders.calls.place_call
        return _Plan(lambda: place(call), self._call_limiter, call.from_number)

    def _plan_voicemail(self, command: EffectCommand) -> _Plan:
        voicemail = VoicemailRequest(
            effect_id=command.effect_id,
            to=command.text("to"),
            from_number=self._from_number(command),
            recording_url=command.text("recording_url"),
        )
        drop = self._senders.voicemail.drop_voicemail
        return _Plan(lambda: drop(voicemail), self._call_limiter, voicemail.from_number)

    def _plan_webhook(self, command: EffectCommand) -> _Plan:
        hook = WebhookRequest(
            effect_id=command.effect_id,
            url=command.text("url"),
            payload=command.data.get("payload", {}),
        )
        post = self._senders.webhooks.post
        return _Plan(lambda: post(hook))

    def _plan_power_dialer_add(self, command: EffectCommand) -> _Plan:
        return _Plan(lambda: self._power_dialer_add(command))

    def _plan_power_dialer_remove(self, command: EffectCommand) -> _Plan:
        return _Plan(lambda: self._power_dialer_remove(command))

    def _paced_after_first(
        self, send: Callable[[SmsMessage], Awaitable[SendResult]], texts: list[SmsMessage]
    ) -> Callable[[SmsMessage], Awaitable[SendResult]]:
        """A ring group's send that takes a turn on the line for every member after the
        first (the command's own turn covers the first): a group of five is five texts to
        the carrier, paced as five."""
        limiter = self._message_limiter
        first = texts[0] if texts else None

        async def paced(message: SmsMessage) -> SendResult:
            if (
                message is not first
                and limiter is not None
                and not await limiter.acquire(message.from_number, unless=self._stopping)
            ):
                # Stopping: this member is left out (said in `undelivered`), and the
                # members reached are not texted again.
                return Transient("not sent: the processor was stopping")
            return await send(message)

        return paced

    async def _power_dialer_add(self, command: EffectCommand) -> SendResult:
        user_id = command.text("user_id")
        await self._senders.power_dialer.add(
            user_id=user_id,
            contact_id=command.text("contact_id"),
            effect_id=command.effect_id,
            at=self._clock(),
        )
        return Delivered("power_dialer", user_id)

    async def _power_dialer_remove(self, command: EffectCommand) -> SendResult:
        everyone = bool(command.data.get("all_users", False))
        user_id = None if everyone else command.optional_text("user_id")
        if user_id is None and not everyone:
            return Rejected("data.user_id: is required unless all_users", "invalid_command")
        await self._senders.power_dialer.remove(
            contact_id=command.text("contact_id"), user_id=user_id
        )
        return Delivered("power_dialer", user_id or "all")


# What carrying out each kind of command means.
_PLANNERS: dict[str, Callable[[EffectProcessor, EffectCommand], _Plan]] = {
    kinds.SMS_SEND: EffectProcessor._plan_message,
    kinds.MMS_SEND: EffectProcessor._plan_message,
    kinds.NOTIFY_SMS: EffectProcessor._plan_notice_text,
    kinds.EMAIL_SEND: EffectProcessor._plan_email,
    kinds.NOTIFY_EMAIL: EffectProcessor._plan_email,
    kinds.CALL_DIAL: EffectProcessor._plan_call,
    kinds.VOICEMAIL_DROP: EffectProcessor._plan_voicemail,
    kinds.WEBHOOK_POST: EffectProcessor._plan_webhook,
    kinds.POWER_DIALER_ADDED: EffectProcessor._plan_power_dialer_add,
    kinds.POWER_DIALER_REMOVED: EffectProcessor._plan_power_dialer_remove,
}


def recipients(
    command: EffectCommand, members_key: str, is_address: Callable[[str], bool]
) -> list[str]:
    """A notification's addresses: the ring group's members' (`ring_group_numbers` /
    `ring_group_emails`) when given, each once, else `to` itself when it is an address."""
    members = command.data.get(members_key)
    if isinstance(members, list) and members:
        return list(dict.fromkeys(str(member) for member in members))
    to = command.data.get("to")
    addresses = to if isinstance(to, list) else [to]
    found = [str(a) for a in addresses if isinstance(a, str) and is_address(a)]
    if not found:
        raise CommandRejected(f"data.{members_key}", f"no address to notify (to={to!r})")
    return found


_ADDRESS = re.compile(r"[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+\.[^@\s<>()\[\],;:\"]+")


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def is_email_address(text: str) -> bool:
    """An address of a plausible shape (`local@domain.tld`), bare or `Name <address>`; never
    with a control character, which parseaddr would cut off unseen ("a@x.com\r\nBcc: …")."""
    return _CONTROL.search(text) is None and _ADDRESS.fullmatch(parsed_address(text)[1]) is not None


def _recipient(message: SmsMessage) -> str:
    return message.to


def replay(entry: LedgerEntry) -> list[CloudEvent]:
    """The outcome events of a finished row, identical to the ones first emitted."""
    context = entry.context
    if entry.status == SENT:
        return [
            outcomes.effect_sent(
                entry.effect_id,
                context,
                entry.provider or "",
                entry.provider_id or "",
                entry.updated_at,
                entry.error if entry.code == UNDELIVERED else None,
            )
        ]
    if entry.status == FAILED:
        events = [
            outcomes.effect_failed(
                entry.effect_id, context, entry.error or "", entry.code, entry.updated_at
            )
        ]
        if entry.code == str(UNSUBSCRIBED) and _to_the_contact(context):
            events.append(
                outcomes.contact_opted_out(
                    entry.effect_id, context, "sms", entry.error or "", entry.updated_at
                )
            )
        return events
    if entry.status == UNKNOWN:
        return [
            outcomes.effect_unknown(
                entry.effect_id, context, entry.error or ABANDONED, entry.updated_at
            )
        ]
    return []


def _words(command: EffectCommand) -> str:
    """An MMS's text: none at all is fine, the picture is the message."""
    body = command.data.get("body")
    if body is not None and not isinstance(body, str):
        raise CommandRejected("data.body", "must be a string")
    return body or ""


def _to_the_contact(context: Mapping[str, Any]) -> bool:
    """Whether the command texted the contact: a carrier's "unsubscribed" (21610) to a
    ring group's or an owner's notice is a user's number, and opts no contact out."""
    return context.get("effect_type") in {kinds.SMS_SEND, kinds.MMS_SEND}
