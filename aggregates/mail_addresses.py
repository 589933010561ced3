"""E-mail addresses read from text anyone writes (a lead's `From:`, an intake `to`, an
inbound mail's headers) with the standard library's parser, which cannot be let fail:
it recurses once per nested comment or group, and a value of a few hundred `(` or `:`
raised RecursionError from one input."""

from __future__ import annotations

from email.utils import getaddresses, parseaddr

# More than this many `(` or `:` in a value and it is not read at all: at what depth the
# parser's recursion gives out depends on how deep the caller already is, and a replay and
# a worker must read the same mail alike. No address a person writes comes near it.
NESTING_AT_MOST = 100


def parsed_address(value: str) -> tuple[str, str]:
    """`email.utils.parseaddr`: (display name, address); ("", "") when it cannot read it."""
    if _too_nested(value):
        return "", ""
    try:
        return parseaddr(value)
    except RecursionError:
        return "", ""


def parsed_addresses(values: list[str]) -> list[tuple[str, str]]:
    """`email.utils.getaddresses`; no pair when it cannot read them."""
    if any(_too_nested(value) for value in values):
        return []
    try:
        return getaddresses(values)
    except RecursionError:
        return []


def _too_nested(value: str) -> bool:
    return value.count("(") > NESTING_AT_MOST or value.count(":") > NESTING_AT_MOST
