"""In-memory senders: keep what they were asked, answer what they were told (default: sent).

For the embedded demo and for processor tests that are about the ledger, not the SDKs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from effects.ports import (
    CallRequest,
    Delivered,
    EmailMessage,
    Senders,
    SendResult,
    SmsMessage,
    VoicemailRequest,
    WebhookRequest,
)
from effects.power_dialer import InMemoryPowerDialerQueue

Script = Callable[[str], SendResult | None]
"""Given the recipient (number, address or URL), a scripted answer or None for "sent"."""


@dataclass
class _Recorder:
    provider: str
    script: Script = field(default=lambda _: None)
    count: int = 0

    def answer(self, recipient: str) -> SendResult:
        scripted = self.script(recipient)
        if scripted is not None:
            return scripted
        self.count += 1
        return Delivered(self.provider, f"fake-{self.provider}-{self.count}")


class FakeSmsSender(_Recorder):
    def __init__(self, script: Script = lambda _: None) -> None:
        super().__init__("twilio", script)
        self.sent: list[SmsMessage] = []

    async def send_sms(self, message: SmsMessage) -> SendResult:
        self.sent.append(message)
        return self.answer(message.to)


class FakeCallPlacer(_Recorder):
    def __init__(self, script: Script = lambda _: None) -> None:
        super().__init__("twilio", script)
        self.placed: list[CallRequest] = []

    async def place_call(self, call: CallRequest) -> SendResult:
        self.placed.append(call)
        return self.answer(call.to)


class FakeVoicemailDropper(_Recorder):
    def __init__(self, script: Script = lambda _: None) -> None:
        super().__init__("twilio", script)
        self.dropped: list[VoicemailRequest] = []

    async def drop_voicemail(self, voicemail: VoicemailRequest) -> SendResult:
        self.dropped.append(voicemail)
        return self.answer(voicemail.to)


class FakeEmailSender(_Recorder):
    def __init__(self, script: Script = lambda _: None) -> None:
        super().__init__("sendgrid", script)
        self.sent: list[EmailMessage] = []

    async def send_email(self, message: EmailMessage) -> SendResult:
        self.sent.append(message)
        return self.answer(",".join(message.to))


class FakeWebhookPoster(_Recorder):
    def __init__(self, script: Script = lambda _: None) -> None:
        super().__init__("webhook", script)
        self.posted: list[WebhookRequest] = []

    async def post(self, hook: WebhookRequest) -> SendResult:
        self.posted.append(hook)
        return self.answer(hook.url)


@dataclass(frozen=True)
class FakeSenders:
    sms: FakeSmsSender = field(default_factory=FakeSmsSender)
    calls: FakeCallPlacer = field(default_factory=FakeCallPlacer)
    voicemail: FakeVoicemailDropper = field(default_factory=FakeVoicemailDropper)
    email: FakeEmailSender = field(default_factory=FakeEmailSender)
    webhooks: FakeWebhookPoster = field(default_factory=FakeWebhookPoster)
    power_dialer: InMemoryPowerDialerQueue = field(default_factory=InMemoryPowerDialerQueue)

    def senders(self) -> Senders:
        return Senders(
            sms=self.sms,
            calls=self.calls,
            voicemail=self.voicemail,
            email=self.email,
            webhooks=self.webhooks,
            power_dialer=self.power_dialer,
        )
