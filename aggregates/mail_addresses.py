"""E-mail addresses read from text anyone writes (a lead's `From:`, an intake `to`, an
inbound mail's headers) with the standard library's parser, which cannot be let fail:
it recurses once per nested comment or group, and a value of a few hundred `(` or `:`
raised RecursionError from one input."""

from __future__ import annotations

from email.utils import getaddresses, parseaddr


def parsed_address(value: str) -> tuple[str, str]:
    """`email.utils.parseaddr`: (display name, address); ("", "") when it cannot read it."""
    try:
        return parseaddr(value)
    except RecursionError:
        return "", ""


def parsed_addresses(values: list[str]) -> list[tuple[str, str]]:
    """`email.utils.getaddresses`; no pair when it cannot read them."""
    try:
        return getaddresses(values)
    except RecursionError:
        return []
