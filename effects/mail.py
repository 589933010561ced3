"""E-mail through SendGrid's v3 mail send, with the real `sendgrid` SDK.

Mail to a contact is commercial: it carries the account's unsubscribe group (`asm`) and a
footer with the sender's postal address and the group's unsubscribe link (CAN-SPAM).
Notifications to the account's own users carry neither. The effect id rides in
`custom_args`, so SendGrid's Event Webhook reports it back with every event.
"""

from __future__ import annotations

import urllib.error
from datetime import datetime
from typing import Any

import python_http_client.exceptions
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import Asm, CustomArg, From, GroupId, Mail

from effects.blocking import run_blocking
from effects.mail_footer import signature_block
from effects.ports import (
    Ambiguous,
    Clock,
    Delivered,
    EmailMessage,
    SendResult,
    Transient,
)
from effects.retry import http_refusal
from effects.sendgrid_client import without_redirects

PROVIDER = "sendgrid"
UNSUBSCRIBE_TAG = "<%asm_group_unsubscribe_raw_url%>"


def footer(postal_address: str, has_unsubscribe_group: bool) -> str:
    """The signature block, with the unsubscribe group's link when there is a group."""
    return signature_block(postal_address, UNSUBSCRIBE_TAG if has_unsubscribe_group else None)


def build_mail(
    message: EmailMessage,
    *,
    default_from: str,
    unsubscribe_group_id: int | None,
    postal_address: str,
) -> dict[str, Any]:
    """The v3 request body (a dict, as the SDK sends it)."""
    body = message.body
    if message.commercial:
        body += footer(postal_address, unsubscribe_group_id is not None)
    mail = Mail(
        from_email=From(message.from_email or default_from),
        to_emails=list(message.to),
        subject=message.subject,
        plain_text_content=body,
        is_multiple=len(message.to) > 1,  # a personalization per recipient
    )
    mail.custom_arg = CustomArg("effect_id", message.effect_id)
    if message.commercial and unsubscribe_group_id is not None:
        mail.asm = Asm(GroupId(unsubscribe_group_id))
    document: dict[str, Any] = mail.get()
    return document


class SendGridEmailSender:
    def __init__(
        self,
        *,
        api_key: str,
        api_base: str,
        default_from: str,
        unsubscribe_group_id: int | None,
        postal_address: str,
        timeout: float,
        clock: Clock,
    ) -> None:
        self._client = SendGridAPIClient(api_key=api_key, host=api_base.rstrip("/"))
        # Copied into every per-request client the SDK builds from this one.
        self._client.client.timeout = timeout
        self._client.client = without_redirects(self._client.client)
        self._default_from = default_from
        self._group = unsubscribe_group_id
        self._postal_address = postal_address
        self._clock = clock

    async def send_email(self, message: EmailMessage) -> SendResult:
        document = build_mail(
            message,
            default_from=self._default_from,
            unsubscribe_group_id=self._group,
            postal_address=self._postal_address,
        )
        try:
            response = await run_blocking(self._client.send, document)
        except python_http_client.exceptions.HTTPError as error:
            return _classify_http(error, self._clock())
        except urllib.error.URLError as error:
            # urllib raises URLError only while it connects and writes the request (a name
            # that does not resolve, a refused or unreachable host, a failed TLS handshake,
            # a write cut short): SendGrid never had the whole mail, so another try is
            # safe. A wait for the answer fails as a bare OSError, below.
            if isinstance(error.reason, ConnectionRefusedError):
                return Transient(f"connection to SendGrid refused: {error.reason}")
            return Transient(f"could not reach SendGrid: {error.reason}")
        except OSError as error:  # a read timeout: the mail may have been accepted
            return Ambiguous(f"no answer from SendGrid ({type(error).__name__}: {error})")
        message_id = response.headers.get("X-Message-Id") or ""
        return Delivered(PROVIDER, str(message_id))


def _classify_http(error: Any, now: datetime) -> SendResult:
    status = int(error.status_code)
    detail = error.body.decode("utf-8", "replace") if isinstance(error.body, bytes) else ""
    retry_after = error.headers.get("Retry-After") if error.headers is not None else None
    return http_refusal(f"sendgrid {status}: {detail[:300]}", status, retry_after, now)
