"""E-mail through Mailgun's messages API, the other `EmailSender` beside SendGrid (mail.py).

`POST {base}/v3/{domain}/messages`, Basic auth `api:<key>`, a form: from, to, subject,
text, and `v:effect_id`, which Mailgun hands back in every event's `user-variables` so the
events route (mailgun_callbacks.py) finds the effect. Mailgun has no async SDK; the
request goes through our HTTP/1.1 client (httpclient.py), whose errors tell "nothing was
sent" (safe to retry) from "the request may have arrived" (never resent: unknown).

Mail to a contact is commercial, as with SendGrid: the postal address under it, and
Mailgun's own unsubscribe link when the domain tracks unsubscribes. A notification to one
of the account's users carries neither.
"""

from __future__ import annotations

import base64
from datetime import datetime
from urllib.parse import quote

import orjson

from effects.formencode import form_encode
from effects.httpclient import Http1Client, HttpResponse, RequestNotSentError
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

PROVIDER = "mailgun"
UNSUBSCRIBE_VARIABLE = "%unsubscribe_url%"
EFFECT_ID_VARIABLE = "v:effect_id"


def build_form(
    message: EmailMessage,
    *,
    default_from: str,
    postal_address: str,
    unsubscribe_link: bool,
) -> list[tuple[str, str]]:
    """The request's form fields, in order."""
    body = message.body
    if message.commercial:
        body += signature_block(postal_address, UNSUBSCRIBE_VARIABLE if unsubscribe_link else None)
    fields = [("from", message.from_email or default_from)]
    fields += [("to", address) for address in message.to]
    if len(message.to) > 1:
        # Mailgun's batch sending: with recipient variables each member gets a mail of
        # their own and sees only their own address (SendGrid's personalization each).
        variables: dict[str, dict[str, str]] = {address: {} for address in message.to}
        fields.append(("recipient-variables", orjson.dumps(variables).decode()))
    fields += [
        ("subject", message.subject),
        ("text", body),
        (EFFECT_ID_VARIABLE, message.effect_id),
    ]
    return fields


class MailgunEmailSender:
    def __init__(
        self,
        *,
        api_key: str,
        domain: str,
        api_base: str,
        default_from: str,
        postal_address: str,
        unsubscribe_link: bool,
        timeout: float,
        clock: Clock,
        pool_size: int = 32,
    ) -> None:
        self._url = f"{api_base.rstrip('/')}/v3/{quote(domain, safe='')}/messages"
        credentials = base64.b64encode(f"api:{api_key}".encode()).decode()
        self._headers = {
            "Authorization": f"Basic {credentials}",
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        self._client = Http1Client(
            pool_size=pool_size, timeout=timeout, connect_timeout=min(5.0, timeout)
        )
        self._default_from = default_from
        self._postal_address = postal_address
        self._unsubscribe_link = unsubscribe_link
        self._clock = clock

    async def send_email(self, message: EmailMessage) -> SendResult:
        form = build_form(
            message,
            default_from=self._default_from,
            postal_address=self._postal_address,
            unsubscribe_link=self._unsubscribe_link,
        )
        body = form_encode(form).encode("ascii")  # quoted: ASCII whatever the text
        try:
            response = await self._client.request("POST", self._url, self._headers, body)
        except RequestNotSentError as error:
            return Transient(f"could not reach Mailgun: {error}")
        except (TimeoutError, OSError) as error:  # written, unanswered: it may have gone out
            return Ambiguous(f"no answer from Mailgun ({type(error).__name__}: {error})")
        return classify(response, self._clock())

    async def close(self) -> None:
        await self._client.close()


def classify(response: HttpResponse, now: datetime) -> SendResult:
    """Mailgun's answer as one of the four results (ports.py)."""
    status = response.status
    if 200 <= status < 300:
        return Delivered(PROVIDER, _answer_field(response, "id").strip("<>"))
    reason = f"mailgun {status}: {(_answer_field(response, 'message') or response.text)[:300]}"
    if status == DOMAIN_NOT_FOUND:
        # The send URL names only the account's domain (MAILGUN_DOMAIN): every mail would
        # be refused alike, so the processor stops as for a wrong key.
        return Transient(reason, str(status), credentials=True)
    return http_refusal(reason, status, response.headers.get("retry-after"), now)


DOMAIN_NOT_FOUND = 404


def _answer_field(response: HttpResponse, name: str) -> str:
    """A field of Mailgun's JSON answer; "" when the answer is no JSON object (its 401 is
    plain text)."""
    try:
        document = orjson.loads(response.body)
    except orjson.JSONDecodeError:
        return ""
    value = document.get(name) if isinstance(document, dict) else None
    return value.strip() if isinstance(value, str) else ""
