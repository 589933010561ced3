"""Reading a provider callback's body: a body that does not read as the form it claims to
be is the sender's error (400), not ours (500 with a traceback in the log, which anyone
could set off before any signature is checked). And SendGrid's Inbound Parse posts each
field in the mail's own character set, named in its `charsets` field."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import BodyPartReader, web
from multidict import MultiDict, MultiDictProxy

# Inbound Parse and Mailgun's Routes post whole mails, attachments included.
CLIENT_MAX_SIZE = 25 * 1024 * 1024

# Inbound Parse's fields a lead is read from: the rest (attachments) are passed over.
_MAIL_FIELDS = frozenset({"to", "from", "subject", "text", "html", "headers", "envelope"})


def _unreadable(error: Exception) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=f"the body does not read as its form ({type(error).__name__})")


async def form_of(request: web.Request) -> MultiDictProxy[Any]:
    """`request.post()`, a body that does not decode (bytes that are not its charset, a
    charset nobody knows) refused as the sender's error."""
    try:
        return await request.post()
    except (UnicodeDecodeError, LookupError, ValueError) as error:
        raise _unreadable(error) from None


async def text_of(request: web.Request) -> str:
    """`request.text()`, refused the same way."""
    try:
        return await request.text()
    except (UnicodeDecodeError, LookupError) as error:
        raise _unreadable(error) from None


async def inbound_parse_form(request: web.Request) -> MultiDictProxy[str]:
    """The mail fields of an Inbound Parse post, each decoded in the character set its
    `charsets` field names (a Latin-1 mail is a lead too, not a 500 SendGrid retries for
    three days, then drops). A field sent as a file is read as its text all the same."""
    if not request.content_type.startswith("multipart/"):
        form = await form_of(request)
        return MultiDictProxy(MultiDict((k, str(v)) for k, v in form.items() if k in _MAIL_FIELDS))
    # Read part by part, so the bound `request.post()` kept is kept here by hand.
    if (request.content_length or 0) > CLIENT_MAX_SIZE:
        raise _too_large(request.content_length or 0)
    reader = await request.multipart()
    raw: list[tuple[str, bytes]] = []
    charsets: dict[str, str] = {}
    total = 0
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            continue  # a nested multipart: no field of the mail's
        name = part.name or ""
        kept = bytearray()
        while chunk := await part.read_chunk():
            total += len(chunk)
            if total > CLIENT_MAX_SIZE:
                raise _too_large(total)
            if name in _MAIL_FIELDS or name == "charsets":
                kept += chunk
        data = bytes(part.decode(bytes(kept)))  # its transfer encoding undone
        if name == "charsets":
            charsets = _charsets(data)
        elif name in _MAIL_FIELDS:
            raw.append((name, data))
    return MultiDictProxy(
        MultiDict((name, _decoded(data, charsets.get(name))) for name, data in raw)
    )


def _too_large(size: int) -> web.HTTPRequestEntityTooLarge:
    return web.HTTPRequestEntityTooLarge(max_size=CLIENT_MAX_SIZE, actual_size=size)


def _charsets(data: bytes) -> dict[str, str]:
    try:
        named = orjson.loads(data)
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(named, dict):
        return {}
    return {str(k): v for k, v in named.items() if isinstance(v, str)}


def _decoded(data: bytes, charset: str | None) -> str:
    """In the named charset, else UTF-8, else Latin-1 (which reads any bytes)."""
    for candidate in (charset, "utf-8"):
        if candidate:
            try:
                return data.decode(candidate)
            except (LookupError, UnicodeDecodeError):
                continue
    return data.decode("latin-1")
