"""The retry schedule: capped exponential backoff with full jitter, and Retry-After honoured."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from effects.ports import Ambiguous, Random, Rejected, SendResult, Transient


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """At most `max_attempts` tries; before try n+1 wait a uniform draw from
    [0, min(cap, base * 2**(n-1))) ("full jitter"), or what the server's Retry-After asked,
    never more than `max_retry_after` (a longer ask is answered by giving up)."""

    # Eight tries wait up to 1+2+4+…+32+60 = 123 s in all (about a minute on average): a
    # provider's or the network's blip of a minute fails no send that nothing went out of.
    max_attempts: int = 8
    base_seconds: float = 1.0
    cap_seconds: float = 60.0
    max_retry_after: float = 300.0

    def delay(self, attempt: int, rand: Random, retry_after: float | None = None) -> float | None:
        """Seconds to wait after failed try number `attempt` (1-based); None: give up."""
        if attempt >= self.max_attempts:
            return None
        if retry_after is not None:
            if retry_after > self.max_retry_after:
                return None
            return max(0.0, float(retry_after))
        ceiling = min(self.cap_seconds, self.base_seconds * 2.0 ** (attempt - 1))
        return rand() * ceiling


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Retry-After is either delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - now).total_seconds())


# The statuses that say the request was not acted on: too many requests, and a service
# that turned it away while unavailable. Retried.
NOT_ACTED_ON = frozenset({429, 503})
# The provider does not know our credentials: nothing was sent, and nothing will be.
UNAUTHORIZED = 401


def http_refusal(
    reason: str, status: int, retry_after: str | None, now: datetime, code: str | None = None
) -> SendResult:
    """A provider's HTTP answer other than success: 429 and 503 are for now (retried, its
    Retry-After honoured); 401 refuses our credentials (the processor stops); another 5xx
    may come after the provider, or the gateway before it, took the request (a 500 part way
    through, a 502 or 504 from a proxy whose upstream went on), so the message may have
    gone and it is in doubt, never sent again (two texts are worse than a late one); any
    other status is for good. `code`: the provider's own (Twilio's), else the status."""
    code = code or str(status)
    if status in NOT_ACTED_ON:
        return Transient(reason, code, parse_retry_after(retry_after, now))
    if status == UNAUTHORIZED:
        return Transient(reason, code, credentials=True)
    if status >= 500:
        return Ambiguous(f"{reason} (it may have been carried out)")
    return Rejected(reason, code)
