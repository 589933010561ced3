"""Mailgun's request signature: hex HMAC-SHA256 of timestamp + token under the webhook
signing key. Mailgun signs its event webhooks (in the JSON body) and its Routes' forwards
(as form fields) alike.

The signature covers the timestamp and token, not the body: a captured one would carry any
body. So a timestamp too far from our clock is refused, as Mailgun advises (the window is
wide, 15 minutes, because Mailgun warns that its own delivery of webhooks can lag), and the
callbacks take each token once (`Ledger.first_use`, shared by every effects process).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import timedelta

from effects.ports import Clock

MAX_CLOCK_DISTANCE = timedelta(minutes=15)


def sign(signing_key: str, timestamp: str, token: str) -> str:
    """The signature Mailgun computes (and the fake server, playing Mailgun, too)."""
    message = (timestamp + token).encode()
    return hmac.new(signing_key.encode(), message, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class MailgunSignatureCheck:
    signing_key: str | None
    clock: Clock
    max_distance: timedelta = MAX_CLOCK_DISTANCE

    def refusal(self, timestamp: str, token: str, signature: str) -> str | None:
        """Why the request is not Mailgun's (for the log), or None when it is."""
        if not self.signing_key:
            return "MAILGUN_WEBHOOK_SIGNING_KEY is not set"
        if not (timestamp and token and signature):
            return "no signature"
        expected = sign(self.signing_key, timestamp, token)
        # Compared as bytes: compare_digest refuses a str that is not ASCII.
        if not hmac.compare_digest(expected.encode(), signature.lower().encode()):
            return "bad signature"
        if not (timestamp.isascii() and timestamp.isdigit()):
            return "a timestamp that is not whole seconds"
        if "\x00" in token:
            return "a NUL in the token"  # signed, but the ledger's key for it cannot hold it
        distance = abs(self.clock().timestamp() - int(timestamp))
        if distance > self.max_distance.total_seconds():
            return f"a timestamp {distance:.0f} s away from our clock"
        return None
