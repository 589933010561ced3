"""Who may use the HTTP API: bearer tokens for administrators (commands) and readers.

The seed: "only administrators can create sequences". A command (POST, PUT, DELETE) needs
the admin token once one is set; the read models need the read token (or the admin one)
once a read token is set (a read token alone refuses every command). `/openapi.json` is
always open: it describes, it reveals no data.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from aiohttp import web

AUTHORIZATION = "Authorization"
OPEN_PATHS = frozenset({"/openapi.json"})


@dataclass(frozen=True, slots=True)
class Tokens:
    admin: str | None = None
    read: str | None = None


class Unauthorized(Exception):  # noqa: N818 - the HTTP status's own name
    """401 (no or unknown token) or 403 (a reader's token on a command)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def check(request: web.Request, tokens: Tokens) -> None:
    """Raise Unauthorized unless the request's bearer token allows it."""
    if request.path in OPEN_PATHS:
        return
    command = request.method not in ("GET", "HEAD")
    if command and tokens.admin is None and tokens.read is not None:
        # Reads guarded and commands open would be upside down: refuse the commands.
        raise Unauthorized(403, "commands need an admin token, and none is set")
    needed = tokens.admin if command else tokens.read
    if needed is None:
        return
    given = _bearer(request)
    if given is None:
        raise Unauthorized(401, "needs an Authorization: Bearer token")
    if _same(given, tokens.admin):
        return
    if _same(given, tokens.read):
        if command:
            raise Unauthorized(403, "the read token cannot send commands: use the admin token")
        return
    raise Unauthorized(401, "unknown token")


def _bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get(AUTHORIZATION, "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def _same(given: str, expected: str | None) -> bool:
    # Constant time: how long a refusal takes must not tell how much of a token matched.
    return expected is not None and hmac.compare_digest(given.encode(), expected.encode())
