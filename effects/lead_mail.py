"""A lead e-mail handed over by a provider's inbound route, as the engine's input fact.

SendGrid Inbound Parse and Mailgun Routes post the same mail in different forms; both become
the same `lead.email_received` on `intake`, so the engine parses a lead alike whichever
provider carried it (aggregates.intake reads the text; it is not done here).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from datetime import datetime
from typing import Final

from aggregates.mail_addresses import parsed_addresses
from effects import outcomes
from schemas.checking import SURROGATES
from schemas.envelope import EFFECTS_SOURCE, CloudEvent

MAX_LEAD_BODY = 200_000  # characters: at most 800 KB as JSON once controls are gone
MAX_LEAD_FIELD = 2_000  # the subject and addresses
# Control characters but line breaks and tabs: JSON writes each as six bytes (\u0001), and
# a lead's fields hold none.
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# A Message-ID longer than this (anyone who can mail the intake address writes it) names the
# event by its digest: the id is not cut with the body, and a record holds 1 MB.
MAX_MESSAGE_ID = 200


def lead_email_received(
    provider: str,
    *,
    to: str,
    sender: str,
    subject: str,
    body: str,
    headers: Iterable[tuple[str, str]],
    at: datetime,
) -> CloudEvent:
    """The mail's id is its Message-ID (`message_key`): a provider posting it again gives
    the same event. A body past MAX_LEAD_BODY characters is cut there, and control
    characters become spaces: a Kafka record holds 1 MB, and a lead's fields are in its
    first lines, not in a megabyte of quoted thread or markup."""
    # The id and `to` too: a control character anywhere (a NUL in a forged Message-ID, say)
    # would have the engine refuse the whole lead.
    key = _printable(message_key(headers, to, sender, subject, body))
    to = _printable(to)[:MAX_LEAD_FIELD]
    return CloudEvent(
        id=f"{provider}-inbound:{key}",
        source=EFFECTS_SOURCE,
        type=outcomes.LEAD_EMAIL_RECEIVED,
        time=at,
        subject=to,
        data={
            "to": to,
            "from": _printable(sender)[:MAX_LEAD_FIELD],
            "subject": _printable(subject)[:MAX_LEAD_FIELD],
            "body": _printable(body[:MAX_LEAD_BODY]),
        },
    )


# What an HTML mail holds that no reader sees: a head, styles, scripts, comments, images
# inlined as data: URIs. Dropped before the body is cut to MAX_LEAD_BODY, so a big style
# sheet does not push the lead's fields past the cut.
_UNSEEN: Final = re.compile(
    r"<(head|style|script)\b.*?</\1\s*>|<!--.*?-->|data:[^\s\"'>]*",
    re.IGNORECASE | re.DOTALL,
)


def seen_html(html: str) -> str:
    """An HTML body without what no reader of it sees."""
    return _UNSEEN.sub("", html)


def _printable(text: str) -> str:
    # A lone surrogate (a charset such as UTF-7 decodes to one) would leave the event unwritable.
    return SURROGATES.sub("\ufffd", _CONTROLS.sub(" ", text))


def first_address(header: str) -> str:
    """The first address of a To:-style header, lower-cased; "" when it has none."""
    addresses = [address for _, address in parsed_addresses([header]) if address]
    return addresses[0].strip().lower() if addresses else ""


def message_key(headers: Iterable[tuple[str, str]], *parts: str) -> str:
    """The mail's Message-ID when present, else a digest of `parts` (to, from, subject,
    body): a provider's retries of one mail map to one id."""
    for name, value in headers:
        if name.strip().lower() == "message-id" and value.strip():
            given = value.strip().strip("<>")
            return given if len(given) <= MAX_MESSAGE_ID else "sha256:" + _digest(given)
    return _digest("\x1f".join(parts))


def _digest(text: str) -> str:
    # surrogatepass: a field decoded from UTF-7 may hold a lone surrogate.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def header_lines(text: str) -> list[tuple[str, str]]:
    """`Name: value` lines (a raw header block) as pairs; folded lines are passed over."""
    pairs = []
    for line in text.splitlines():
        name, colon, value = line.partition(":")
        if colon:
            pairs.append((name, value))
    return pairs
