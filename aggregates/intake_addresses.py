"""The address a lead e-mail reaches a sequence at: what an intake `to` names, bare and
normalised, and the address `intake_address: auto` gives a sequence. Sequence definitions
(aggregates/sequence.py) and the intake of mail (aggregates/engine_facts.py) both read an
address through here, so the two meet."""

from __future__ import annotations

import hashlib
import re

from aggregates.mail_addresses import parsed_addresses

_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+")


def own_intake_address(sequence_id: str, domain: str) -> str:
    """The address `intake_address: auto` sets: the sequence's id made safe for an address
    (what a plain address holds stays, each run of anything else is one `-`; at most
    READABLE_PART characters of it, as a local part holds 64) and a hash of the id itself
    (so ids that read alike, `A,b` and `a-b`, still differ) at the account's intake domain.
    Normalised as mail to it will be, so the two meet. A pure function of the id: every
    worker, and every replay, sets the same one."""
    safe = _NOT_ADDRESS_SAFE.sub("-", sequence_id.lower())[:READABLE_PART]
    readable = safe.strip("-.") or "sequence"
    digest = hashlib.sha256(sequence_id.encode()).hexdigest()[:8]
    return intake_address(f"{readable}-{digest}@{domain}")


# The characters of a plain address's local part (_PLAIN_ADDRESS), and how many to keep.
_NOT_ADDRESS_SAFE = re.compile(r"[^a-z0-9._%+\-]+")
READABLE_PART = 40


def intake_address(to: str) -> str:
    """The bare address a lead e-mail was sent to: lower-cased, without name or brackets.

    ``to`` may be ``addr``, ``Name <addr>``, ``"Name, Inc" <addr>`` or ``<addr>``; when it
    lists several, the first is taken. Text holding no address comes back stripped and
    lower-cased, so it matches no sequence rather than a wrong one.
    """
    return intake_candidates(to)[0]


def intake_candidates(to: str) -> list[str]:
    """Every address ``to`` lists, bare and lower-cased, in order, each followed by itself
    without a ``+tag`` (``leads-x+zillow@…`` is ``leads-x@…`` tagged by a vendor); at least
    one entry (see `intake_address`). A mail to the agent and the intake address together
    reaches the sequence through the second."""
    bare = to.strip()
    if _PLAIN_ADDRESS.fullmatch(bare):  # the usual case, without the parser's cost
        addresses = [bare.lower()]
    else:
        found = [a.strip().lower() for _, a in parsed_addresses([to.replace(";", ",")]) if "@" in a]
        addresses = found or [bare.lower()]
    candidates: list[str] = []
    for address in addresses:
        local, at, domain = address.partition("@")
        untagged = f"{local.partition('+')[0]}@{domain}" if at and "+" in local else None
        candidates += [a for a in (address, untagged) if a is not None and a not in candidates]
    return candidates
