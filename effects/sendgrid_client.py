"""The SendGrid SDK's HTTP client, without following redirects.

The SDK sends through `python_http_client`, whose urllib opener follows a 301/302 as a GET
without the body to wherever `Location` says, with the `Authorization: Bearer` header: a
proxy or a wrong `SENDGRID_API_BASE` that redirects would receive the API key, and a 2xx
there would be taken for a mail accepted. Here a redirect is the answer itself (refused,
like Twilio's and a webhook's), and the key goes nowhere but the base it was given for.
"""

from __future__ import annotations

import urllib.request
from typing import Any

import python_http_client


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_request_and_answer: Any) -> None:
        return None  # urllib then raises the 3xx as an HTTPError


class NoRedirectClient(python_http_client.Client):  # type: ignore[misc]
    """`python_http_client.Client` whose requests, and those of the clients it builds for
    each path segment (`client.mail.send`), never follow a redirect."""

    def _build_client(self, name: str | None = None) -> NoRedirectClient:
        built = super()._build_client(name)
        # The library builds its own class by name; the segment clients must be this one.
        built.__class__ = NoRedirectClient
        return built  # type: ignore[no-any-return]

    def _make_request(self, opener: Any, request: Any, timeout: float | None = None) -> Any:
        del opener  # the library's own follows redirects
        return super()._make_request(
            urllib.request.build_opener(_RefuseRedirects), request, timeout=timeout
        )


def without_redirects(client: python_http_client.Client) -> NoRedirectClient:
    """A client like `client` (its host, headers, version, timeout) that follows none."""
    return NoRedirectClient(
        host=client.host,
        request_headers=client.request_headers,
        version=3,
        timeout=client.timeout,
    )
