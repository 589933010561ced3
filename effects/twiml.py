"""TwiML for the dialers and the ringless voicemail, and the callback URLs they point at.

Progressive: the contact is called; on answer a one-digit <Gather> plays the message;
1 dials the ring group's numbers (all at once, the first to answer takes it), 2 asks for a
callback, 9 opts the contact out. Preview: each agent of the ring group is called; the
message plays (repeated until a key, when `repeat_message`), and a key connects that agent
to the contact; the first agent to do so wins, the others are told and hung up.
"""

from __future__ import annotations

from collections.abc import Iterable

from twilio.twiml.voice_response import (  # type: ignore[import-untyped, unused-ignore]
    VoiceResponse,
)

from effects.formencode import form_encode

CONNECT = "connect"
CALLBACK = "callback"
OPT_OUT = "opt_out"
PROGRESSIVE_KEYS = {"1": CONNECT, "2": CALLBACK, "9": OPT_OUT}

GATHER_TIMEOUT_SECONDS = 8


class CallbackUrls:
    """The URLs Twilio calls back; the effect id rides in the query of each."""

    def __init__(self, public_base: str) -> None:
        self.base = public_base.rstrip("/")

    def _url(self, path: str, **query: str) -> str:
        return f"{self.base}{path}?{form_encode(query.items())}"

    def status(self, effect_id: str) -> str:
        return self._url("/twilio/status", effect_id=effect_id)

    def gather(self, effect_id: str, mode: str) -> str:
        return self._url("/twilio/gather", effect_id=effect_id, mode=mode)


def _xml(response: VoiceResponse) -> str:
    return str(response.to_xml(xml_declaration=False))


def progressive_prompt(message: str, action_url: str) -> str:
    response = VoiceResponse()
    gather = response.gather(
        num_digits=1, action=action_url, method="POST", timeout=GATHER_TIMEOUT_SECONDS
    )
    gather.say(message)
    response.say("We did not receive a choice. Goodbye.")
    response.hangup()
    return _xml(response)


def preview_prompt(message: str, repeat_message: bool, action_url: str) -> str:
    response = VoiceResponse()
    gather = response.gather(
        num_digits=1, action=action_url, method="POST", timeout=GATHER_TIMEOUT_SECONDS
    )
    # loop=0: <Say> repeats until the agent presses a key or hangs up.
    gather.say(message, loop=0 if repeat_message else 1)
    if not repeat_message:
        # Heard once and no key: connect anyway (the gather endpoint treats "no digit" so).
        response.redirect(action_url, method="POST")
    else:
        response.hangup()
    return _xml(response)


def connect_to(numbers: Iterable[str], caller_id: str | None, announcement: str) -> str:
    response = VoiceResponse()
    if announcement:
        response.say(announcement)
    dial = response.dial(caller_id=caller_id) if caller_id else response.dial()
    for number in numbers:
        dial.number(number)
    return _xml(response)


def say_and_hang_up(text: str) -> str:
    response = VoiceResponse()
    response.say(text)
    response.hangup()
    return _xml(response)


def voicemail(recording_url: str) -> str:
    response = VoiceResponse()
    response.play(recording_url)
    response.hangup()
    return _xml(response)
