"""The Twilio SDK, pointed at TWILIO_API_BASE, and what its errors mean for a send.

How the SDK is rebased: every Twilio resource builds absolute URLs on `https://api.twilio.com`
(or another `*.twilio.com` product host) and hands them to the client's `HttpClient`. The
SDK lets you pass your own `http_client=` to `twilio.rest.Client`, so both clients here are
`HttpClient`s that swap the scheme and host of any `*.twilio.com` URL for the configured base
(`http://127.0.0.1:PORT` for the fake server) and keep the path and query. The SDK's own
`edge`/`region` options only rename hosts inside twilio.com, so they cannot reach a local
server.

Three transports, same rebasing:
- `Http1RebasedHttpClient` (`async`, the default): `create_async` on the event loop over
  effects/httpclient.py, the cheapest per request (see bench/bench_effects.py).
- `AsyncRebasedHttpClient` (`aiohttp`): the same on aiohttp, about twice the CPU a send.
- `RebasedTwilioHttpClient` (`threads`): the SDK's requests-based client in a thread pool.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import requests
import requests.adapters
import urllib3.exceptions

# twilio ships no type information (no py.typed); its objects are Any here.
from twilio.base.exceptions import (  # type: ignore[import-untyped, unused-ignore]
    TwilioRestException,
)
from twilio.http import AsyncHttpClient  # type: ignore[import-untyped, unused-ignore]
from twilio.http.http_client import (  # type: ignore[import-untyped, unused-ignore]
    TwilioHttpClient,
)
from twilio.http.response import Response  # type: ignore[import-untyped, unused-ignore]
from twilio.rest import Client  # type: ignore[import-untyped, unused-ignore]

from effects.formencode import form_encode
from effects.httpclient import Http1Client, RequestNotSentError
from effects.ports import Ambiguous, Rejected, SendResult, Transient
from effects.retry import NOT_ACTED_ON, http_refusal
from effects.settings import TWILIO_DEFAULT_BASE

_log = logging.getLogger(__name__)

UNSUBSCRIBED = 21610  # "Attempt to send to unsubscribed recipient"
INVALID_NUMBERS = {21211: "invalid 'To' phone number", 21614: "'To' number is not SMS-capable"}


_REBASED_KEPT = 1024

# The Retry-After of the refusal a transport read last, for `classify`: the SDK's exception
# keeps the status and Twilio's code, not the headers. A context variable, so each send
# (a task of its own; a thread's copied context for the threads transport, handed back by
# `twilio_senders._create`) sees its own response's, not a concurrent one's.
RETRY_AFTER: ContextVar[str | None] = ContextVar("twilio_retry_after", default=None)


def _keep_retry_after(status: int, headers: Mapping[str, str] | None) -> None:
    found = None
    if headers and status in NOT_ACTED_ON:
        found = headers.get("retry-after") or headers.get("Retry-After")
    RETRY_AFTER.set(found)


def rebase(url: str, base: str) -> str:
    """`https://api.twilio.com/2010-04-01/...` -> `<base>/2010-04-01/...`."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not (host == "twilio.com" or host.endswith(".twilio.com")):
        return url
    target = urlsplit(base)
    path = target.path.rstrip("/") + parts.path
    return urlunsplit((target.scheme, target.netloc, path, parts.query, parts.fragment))


class RebasedTwilioHttpClient(TwilioHttpClient):  # type: ignore[misc, unused-ignore]
    """The SDK's requests client, rebased, with a connection pool as large as the thread pool."""

    def __init__(self, base_url: str, *, timeout: float, pool_size: int) -> None:
        super().__init__(pool_connections=True, timeout=timeout)
        self.base_url = base_url.rstrip("/")
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=max(pool_size, 4))
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        response = super().request(method, rebase(url, self.base_url), *args, **kwargs)
        _keep_retry_after(response.status_code, response.headers)
        return response


class AsyncRebasedHttpClient(AsyncHttpClient):  # type: ignore[misc, unused-ignore]
    """An asynchronous `HttpClient` on aiohttp: one session, created on first use in the
    running loop, connect and read timeouts kept apart (a connect timeout sent nothing)."""

    def __init__(
        self, base_url: str, *, timeout: float, pool_size: int, connect_timeout: float = 5.0
    ) -> None:
        super().__init__(logging.getLogger("twilio.async_http_client"), True, timeout)
        self.base_url = base_url.rstrip("/")
        self._pool_size = pool_size
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=timeout
        )
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._pool_size),
                timeout=self._timeout,
            )
        return self._session

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Any:
        session = self._get_session()
        sent_headers = dict(headers or {})
        if auth:
            sent_headers["Authorization"] = aiohttp.encode_basic_auth(auth[0], auth[1])
        body: bytes | None = None
        pairs = _form_pairs(data)
        if pairs is not None:
            # Encoded here rather than through aiohttp's FormData: same bytes, a third of
            # the work, and sending is the hot path.
            body = form_encode(pairs).encode()
            sent_headers["Content-Type"] = "application/x-www-form-urlencoded"
        per_request = (
            aiohttp.ClientTimeout(
                total=None, sock_connect=self._timeout.sock_connect, sock_read=timeout
            )
            if timeout
            else self._timeout
        )
        async with session.request(
            method.upper(),
            rebase(url, self.base_url),
            params=_form_pairs(params),
            data=body,
            headers=sent_headers,
            allow_redirects=allow_redirects,
            timeout=per_request,
        ) as response:
            text = await response.text()
            _keep_retry_after(response.status, response.headers)
            return Response(response.status, text, response.headers)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class Http1RebasedHttpClient(AsyncHttpClient):  # type: ignore[misc, unused-ignore]
    """An asynchronous `HttpClient` on effects/httpclient.py: keep-alive connections, and
    `RequestNotSentError` only when no byte of the request left (a retry is then safe)."""

    def __init__(
        self, base_url: str, *, timeout: float, pool_size: int, connect_timeout: float = 5.0
    ) -> None:
        super().__init__(logging.getLogger("twilio.async_http_client"), True, timeout)
        self.base_url = base_url.rstrip("/")
        self._http = Http1Client(
            pool_size=pool_size, connect_timeout=connect_timeout, timeout=timeout
        )
        # The SDK hands over the same credentials and (per resource) the same URL on every
        # request: encode and rebase each once.
        self._authorization: dict[tuple[str, str], str] = {}
        self._rebased: dict[str, str] = {}

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,  # noqa: ARG002 - no redirect is ever followed
    ) -> Any:
        target = self._rebased.get(url)
        if target is None:
            if len(self._rebased) >= _REBASED_KEPT:
                self._rebased.clear()  # URLs naming one resource each (a sid) come and go
            target = self._rebased[url] = rebase(url, self.base_url)
        query = _form_pairs(params)
        if query is not None:
            target += ("&" if "?" in target else "?") + form_encode(query)
        sent_headers = dict(headers or {})
        if auth:
            sent_headers["Authorization"] = self._basic(auth)
        body: bytes | None = None
        pairs = _form_pairs(data)
        if pairs is not None:
            body = form_encode(pairs).encode()
            sent_headers["Content-Type"] = "application/x-www-form-urlencoded"
        response = await self._http.request(
            method.upper(), target, sent_headers, body, timeout=timeout or self.timeout
        )
        _keep_retry_after(response.status, response.headers)
        return Response(response.status, response.text, response.headers)

    def _basic(self, auth: tuple[str, str]) -> str:
        value = self._authorization.get(auth)
        if value is None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
            value = self._authorization[auth] = f"Basic {token}"
        return value

    async def close(self) -> None:
        await self._http.close()


def _form_pairs(values: dict[str, object] | None) -> list[tuple[str, str]] | None:
    """The SDK gives lists for repeated parameters (MediaUrl); a form repeats the key."""
    if not values:
        return None
    pairs: list[tuple[str, str]] = []
    for key, value in values.items():
        items = value if isinstance(value, list) else [value]
        pairs.extend((key, str(item)) for item in items if item is not None)
    return pairs


def build_twilio_client(
    *,
    account_sid: str,
    auth_token: str,
    api_base: str = TWILIO_DEFAULT_BASE,
    transport: str = "async",
    timeout: float = 15.0,
    pool_size: int = 32,
) -> Any:
    http_client: Any
    if transport == "async":
        http_client = Http1RebasedHttpClient(api_base, timeout=timeout, pool_size=pool_size)
    elif transport == "aiohttp":
        http_client = AsyncRebasedHttpClient(api_base, timeout=timeout, pool_size=pool_size)
    else:
        http_client = RebasedTwilioHttpClient(api_base, timeout=timeout, pool_size=pool_size)
    return Client(
        username=account_sid,
        password=auth_token,
        account_sid=account_sid,
        http_client=http_client,
    )


async def close_twilio_client(client: Any) -> None:
    http_client = getattr(client, "http_client", None)
    if isinstance(http_client, (Http1RebasedHttpClient, AsyncRebasedHttpClient)):
        await http_client.close()


def classify(error: BaseException) -> SendResult:
    """What a Twilio SDK exception means: refused for good, refused for now, or unknown."""
    if isinstance(error, TwilioRestException):
        code = int(error.code) if isinstance(error.code, int) else None
        text = f"twilio {error.status}: {error.msg}"
        if code == UNSUBSCRIBED:
            return Rejected(f"recipient unsubscribed: {error.msg}", str(code), opted_out=True)
        if code in INVALID_NUMBERS:
            return Rejected(f"{INVALID_NUMBERS[code]}: {error.msg}", str(code))
        # The rest as any provider's HTTP answer (a 401 is Twilio's 20003: the SID or token).
        return http_refusal(
            text, error.status, RETRY_AFTER.get(), datetime.now(UTC), str(code) if code else None
        )
    if _never_connected(error):
        return Transient(f"connection to Twilio failed: {error}")
    return Ambiguous(f"no answer from Twilio ({type(error).__name__}: {error})")


def _never_connected(error: BaseException) -> bool:
    """True when the request provably never reached the server (safe to retry)."""
    if isinstance(
        error,
        (
            RequestNotSentError,
            aiohttp.ClientConnectorError,
            aiohttp.ConnectionTimeoutError,
            requests.exceptions.ConnectTimeout,
        ),
    ):
        return True
    if isinstance(error, requests.exceptions.ConnectionError):
        seen: BaseException | None = error
        for _ in range(6):
            if seen is None:
                break
            if isinstance(
                seen,
                (
                    urllib3.exceptions.NewConnectionError,
                    urllib3.exceptions.ConnectTimeoutError,
                    ConnectionRefusedError,
                ),
            ):
                return True
            inner = seen.args[0] if seen.args else None
            reason = getattr(inner, "reason", None)
            seen = reason if isinstance(reason, BaseException) else seen.__cause__
    return False
