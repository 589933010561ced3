"""Calls from web pages of other origins (`dripstream api --allow-origin`): a dashboard served
elsewhere calls the API from a browser, which first asks (a preflight `OPTIONS`) whether a
command may be sent, and lets the page read an answer only when the answer names the page's
origin. Origins not named get no such headers, so the browser keeps the answers from their
pages. Tokens still apply: a page sends its own `Authorization` header."""

from __future__ import annotations

import re
from collections.abc import Iterable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

ANY_ORIGIN = "*"
ORIGINS_VARIABLE = "DRIPSTREAM_API_ALLOW_ORIGINS"
# What a page may send with a command, and how long a browser may keep the preflight's answer.
ALLOWED_HEADERS = "Authorization, Content-Type, Idempotency-Key"
ALLOWED_METHODS = "GET, HEAD, POST, PUT, DELETE"
PREFLIGHT_SECONDS = "600"
# A browser's Origin header: scheme, host and port, nothing after them.
_ORIGIN = re.compile(r"https?://[^/\s?#]+", re.IGNORECASE)


def origin_problem(origin: str) -> str | None:
    """Why `origin` cannot be allowed, or None."""
    if origin == ANY_ORIGIN or _ORIGIN.fullmatch(origin):
        return None
    return (
        f"{origin!r} is no origin: give scheme, host and port as a browser sends them"
        " (https://dashboard.example.com:8443, no path), or * for every one"
    )


def allowing(origins: Iterable[str]) -> Middleware:
    """The middleware answering preflights and naming the allowed origins; put it first."""
    allowed = frozenset(origin.lower() for origin in origins)  # as origin_problem let them
    everyone = ANY_ORIGIN in allowed

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is None or not (everyone or origin.lower() in allowed):
            return await handler(request)
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            # Answered here, before the tokens: a preflight carries none.
            response: web.StreamResponse = web.Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
            response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            response.headers["Access-Control-Max-Age"] = PREFLIGHT_SECONDS
        else:
            response = await handler(request)
        response.headers["Access-Control-Allow-Origin"] = ANY_ORIGIN if everyone else origin
        if not everyone:
            response.headers.add("Vary", "Origin")  # caches keep one answer per origin
        return response

    return cors
