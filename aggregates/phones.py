"""Phone numbers to E.164: the one spelling the domain stores and compares.

Lead forms write numbers every which way; this turns them into ``+17205550142`` or nothing.
"""

from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers

DEFAULT_REGION = "US"


_INTERNATIONAL_00 = re.compile(r"^\s*00(?=\s*[1-9])")


# A lead's number is read once to see whether the mail reaches anyone and again to take it:
# each reading costs a full parse (about 80 µs).
@lru_cache(maxsize=256)
def to_e164(raw: str | None, region: str = DEFAULT_REGION) -> str | None:
    """``raw`` as an E.164 string, or None when it holds no valid number.

    National numbers are read in ``region``. When the whole text is not a number (e.g.
    ``"720-555-0142 (mobile)"``), the first valid number inside it is taken instead.
    """
    if raw is None or not raw.strip():
        return None
    # "00 44 …": the international prefix of most of the world, which region US does not read
    # (its own, "011", it does).
    raw = _INTERNATIONAL_00.sub("+", raw, count=1)
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        return first_phone_in(raw, region)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def first_phone_in(text: str, region: str = DEFAULT_REGION) -> str | None:
    """The first valid number written anywhere in free ``text``, as E.164."""
    found = first_phone_written(text, region)
    return None if found is None else found[0]


def first_phone_written(text: str, region: str = DEFAULT_REGION) -> tuple[str, str] | None:
    """The first valid number written anywhere in free ``text``: as E.164, and as written."""
    match = next(iter(phonenumbers.PhoneNumberMatcher(text, region)), None)
    if match is None:
        return None
    e164 = phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164)
    return e164, match.raw_string
