"""SMS/MMS, dialer calls and ringless voicemail through the real Twilio SDK."""

from __future__ import annotations

import contextvars
import logging
from typing import Any

from effects import twiml
from effects.blocking import run_blocking
from effects.fan_out import to_each
from effects.ports import (
    CallRequest,
    Delivered,
    SendResult,
    SmsMessage,
    VoicemailRequest,
)
from effects.twilio_http import RETRY_AFTER, classify

_log = logging.getLogger(__name__)

PROVIDER = "twilio"
CALL_EVENTS = ["initiated", "ringing", "answered", "completed"]


async def _create(resource: Any, is_async: bool, **kwargs: Any) -> Any:
    """`resource.create(**kwargs)` on whichever transport the client was built with."""
    if is_async:
        return await resource.create_async(**kwargs)
    # In a context of its own, whose Retry-After (twilio_http.RETRY_AFTER) comes back here.
    context = contextvars.copy_context()
    try:
        return await run_blocking(context.run, resource.create, **kwargs)
    finally:
        RETRY_AFTER.set(context.get(RETRY_AFTER))


class TwilioSmsSender:
    def __init__(self, client: Any, urls: twiml.CallbackUrls) -> None:
        # The resource objects are built once: the SDK's properties rebuild them per call.
        self._messages = client.messages
        self._async = bool(client.http_client.is_async)
        self._urls = urls

    async def send_sms(self, message: SmsMessage) -> SendResult:
        kwargs: dict[str, Any] = {
            "to": message.to,
            "from_": message.from_number,
            "status_callback": self._urls.status(message.effect_id),
        }
        if message.body:  # an MMS may be its picture alone: then Twilio takes no Body
            kwargs["body"] = message.body
        if message.media_urls:
            kwargs["media_url"] = list(message.media_urls)
        try:
            created = await _create(self._messages, self._async, **kwargs)
        except Exception as error:
            return classify(error)
        return Delivered(PROVIDER, str(created.sid))


class TwilioCallPlacer:
    """Progressive: one call to the contact. Preview: one call per agent of the ring group;
    once the first is placed the effect counts as sent, so a later agent's failure is
    logged, never retried (a retry would ring the first agent again)."""

    def __init__(self, client: Any, urls: twiml.CallbackUrls) -> None:
        self._calls = client.calls
        self._async = bool(client.http_client.is_async)
        self._urls = urls

    async def place_call(self, call: CallRequest) -> SendResult:
        action = self._urls.gather(call.effect_id, call.mode)
        status = self._urls.status(call.effect_id)
        if call.mode == "progressive":
            targets = [(call.to, twiml.progressive_prompt(call.message, action))]
        else:
            prompt = twiml.preview_prompt(call.message, call.repeat_message, action)
            targets = [(agent, prompt) for agent in call.agent_numbers]

        async def dial(target: tuple[str, str]) -> SendResult:
            to, document = target
            try:
                created = await _create(
                    self._calls,
                    self._async,
                    to=to,
                    from_=call.from_number,
                    twiml=document,
                    status_callback=status,
                    status_callback_event=CALL_EVENTS,
                )
            except Exception as error:
                return classify(error)
            return Delivered(PROVIDER, str(created.sid))

        # Preview: every agent of the ring group is called; see effects.fan_out.
        return await to_each(targets, dial, provider=PROVIDER, name=_callee)


class TwilioVoicemailDropper:
    """A "ringless" voicemail the portable way: a call that waits for the answering
    machine's beep (machine detection `DetectMessageEnd`) and then plays the recording.
    Carrier-level ringless drops need a dedicated vendor; this adapter is the seam for one."""

    def __init__(self, client: Any, urls: twiml.CallbackUrls) -> None:
        self._calls = client.calls
        self._async = bool(client.http_client.is_async)
        self._urls = urls

    async def drop_voicemail(self, voicemail: VoicemailRequest) -> SendResult:
        try:
            created = await _create(
                self._calls,
                self._async,
                to=voicemail.to,
                from_=voicemail.from_number,
                twiml=twiml.voicemail(voicemail.recording_url),
                machine_detection="DetectMessageEnd",
                status_callback=self._urls.status(voicemail.effect_id),
                status_callback_event=CALL_EVENTS,
            )
        except Exception as error:
            return classify(error)
        return Delivered(PROVIDER, str(created.sid))


def _callee(target: tuple[str, str]) -> str:
    return target[0]
