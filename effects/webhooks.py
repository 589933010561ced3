"""Signed webhooks (Standard Webhooks) with a guard against server-side request forgery.

A sequence's webhook URL is user input, posted to from inside our network. So: only http(s);
the host is resolved and every address must be public (no loopback, private, link-local,
multicast, reserved or unspecified address, IPv4-mapped forms included) unless the host or
network is on the allow-list; the connection is made through a resolver that applies the
same check, so a DNS answer that changes between check and connect is refused too; and no
redirect is followed (a 3xx is a failure: following it would let a public host bounce us to
an internal one).

Each delivery carries `webhook-id` (the effect id: receivers deduplicate on it, which is
what makes retrying a timed-out delivery safe), `webhook-timestamp` and `webhook-signature`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

import aiohttp
import orjson
from aiohttp.abc import AbstractResolver, ResolveResult

from effects.ports import (
    Ambiguous,
    Clock,
    Delivered,
    Rejected,
    SendResult,
    Transient,
    WebhookRequest,
)
from effects.retry import parse_retry_after

PROVIDER = "webhook"
SECRET_PREFIX = "whsec_"  # noqa: S105 - a format prefix, not a secret

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolve = Callable[[str, int], Awaitable[list[str]]]


# -- signing -------------------------------------------------------------------------------


def secret_key(secret: str) -> bytes:
    """`whsec_<base64>` is the spec's serialization of the key bytes; anything else is
    taken as the raw key, UTF-8 encoded."""
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
        except binascii.Error:
            pass
    return secret.encode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


# -- the guard -----------------------------------------------------------------------------


class AddressRefused(OSError):  # noqa: N818 - a refusal, named as the fact it is
    """The URL's host is, or resolves to, an address webhooks may not reach."""


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    forbidden = (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )
    # is_global also rules out shared (CGNAT) and documentation ranges.
    return not forbidden and address.is_global


async def system_resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


class NetworkGuard:
    """`allowlist` entries are host names (exact, case-insensitive) or IP networks/addresses
    (`10.1.2.0/24`, `127.0.0.1`): internal endpoints someone decided webhooks may reach."""

    def __init__(self, allowlist: Iterable[str] = (), resolve: Resolve = system_resolve) -> None:
        self._hosts: set[str] = set()
        self._networks: list[Network] = []
        for entry in allowlist:
            try:
                self._networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self._hosts.add(entry.lower().rstrip("."))
        self._resolve = resolve

    def permits(self, host: str, address: IPAddress) -> bool:
        if host.lower().rstrip(".") in self._hosts:
            return True
        if any(address in network for network in self._networks):
            return True
        return is_public(address)

    async def check(self, host: str, port: int) -> list[str]:
        """The addresses to connect to; AddressRefused if any of them is off limits."""
        try:
            literal = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            literal = None
        if literal is not None:
            addresses = [str(literal)]
        else:
            try:
                addresses = await self._resolve(host, port)
            except OSError as error:
                raise AddressRefused(f"{host} does not resolve: {error}") from None
        if not addresses:
            raise AddressRefused(f"{host} does not resolve")
        for text in addresses:
            address = ipaddress.ip_address(text.split("%")[0])
            if not self.permits(host, address):
                raise AddressRefused(f"{host} resolves to {address}, which is not public")
        return addresses


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver hook: resolution at connect time goes through the guard too."""

    def __init__(self, guard: NetworkGuard) -> None:
        self._guard = guard

    async def resolve(
        self,
        host: str,
        port: int = 0,
        family: socket.AddressFamily = socket.AF_INET,  # noqa: ARG002 - every family is checked
    ) -> list[ResolveResult]:
        addresses = await self._guard.check(host, port)
        results: list[ResolveResult] = []
        for text in addresses:
            address = ipaddress.ip_address(text.split("%")[0])
            results.append(
                {
                    "hostname": host,
                    "host": str(address),
                    "port": port,
                    "family": socket.AF_INET6 if address.version == 6 else socket.AF_INET,
                    "proto": 0,
                    "flags": socket.AI_NUMERICHOST,
                }
            )
        return results

    async def close(self) -> None:
        return None


# -- the poster ----------------------------------------------------------------------------


class HttpWebhookPoster:
    """One delivery attempt per `post`; the processor's retry policy decides about the next."""

    def __init__(
        self,
        *,
        guard: NetworkGuard,
        clock: Clock,
        secret: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._guard = guard
        self._clock = clock
        self._secret = secret
        # Connecting has a bound of its own: a connection never made is safe to try again,
        # a request sent and not answered is not (see `post`).
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=timeout / 2)
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(resolver=GuardedResolver(self._guard)),
                timeout=self._timeout,
                trust_env=False,  # no proxy from the environment: it would skip the guard
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(self, hook: WebhookRequest) -> SendResult:
        parts = urlsplit(hook.url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            return Rejected(f"not an http(s) URL: {hook.url!r}", "bad_url")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return Rejected(f"bad port in {hook.url!r}", "bad_url")
        try:
            await self._guard.check(parts.hostname, port)
        except AddressRefused as error:
            return Rejected(f"refused: {error}", "address_refused")

        body = orjson.dumps(hook.payload)
        now = self._clock()
        timestamp = int(now.timestamp())
        headers = {
            "content-type": "application/json",
            "user-agent": "dripstream-webhooks/1",
            "webhook-id": hook.effect_id,
            "webhook-timestamp": str(timestamp),
        }
        # The key is the processor's own (EFFECTS_WEBHOOK_SECRET): none rides on the topics.
        if self._secret:
            headers["webhook-signature"] = sign(self._secret, hook.effect_id, timestamp, body)
        try:
            async with self._get_session().post(
                hook.url, data=body, headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                location = response.headers.get("Location", "")
                retry_after = response.headers.get("Retry-After")
                await response.read()
        except aiohttp.ClientConnectorError as error:
            if isinstance(error.os_error, AddressRefused):
                return Rejected(f"refused: {error.os_error}", "address_refused")
            return Transient(f"cannot connect: {error}")
        except aiohttp.ConnectionTimeoutError as error:
            return Transient(f"cannot connect in time: {error}", "timeout")
        except (TimeoutError, aiohttp.ClientError) as error:
            # Sent, or partly sent, and not answered: the receiver may have acted on it. Not
            # tried again, as for a provider's read timeout (effects/README.md): a receiver
            # slower than the timeout would get it once per try, and the last try's failure
            # would say "failed" of a webhook delivered five times.
            if isinstance(error, TimeoutError):
                return Ambiguous(
                    f"no answer from {parts.hostname} within {self._timeout.total:g} s"
                )
            return Ambiguous(f"no answer from {parts.hostname} ({type(error).__name__}: {error})")
        return _classify(status, location, parse_retry_after(retry_after, now))


def _classify(status: int, location: str, retry_after: float | None) -> SendResult:
    if 200 <= status < 300:
        return Delivered(PROVIDER, f"http-{status}")
    if 300 <= status < 400:
        return Rejected(f"redirect not followed: {status} to {location or '?'}", str(status))
    if status in {408, 425, 429} or status >= 500:
        return Transient(f"http {status}", str(status), retry_after)
    return Rejected(f"http {status}", str(status))
