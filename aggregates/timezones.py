"""Phone numbers and the contact's time zone (CONTRACT.md §3: "The contact's time zone").

Everything here is called per contact, so the phone-to-zone lookup and the ZoneInfo
objects are cached.
"""

from __future__ import annotations

from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_timezone
from phonenumbers.tzdata import TIMEZONE_LONGEST_PREFIX

__all__ = ["contact_zone", "normalize_phone", "zone_for_phone", "zone_named"]


def normalize_phone(text: str, default_region: str = "US") -> str | None:
    """`text` as an E.164 number, or None when it is not a valid phone number.

    A number without a leading `+` is read in `default_region`.
    """
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def zone_for_phone(e164: str) -> str | None:
    """The IANA zone of a phone number when its prefix maps to exactly one zone, else None.

    None also for an invalid number, an unknown prefix, or a zone this machine's tz
    database does not know. Zones depend only on a number's leading digits (at most
    TIMEZONE_LONGEST_PREFIX of them), so the answer is cached per prefix: parsing every
    new number would cost far more than the rest of a contact's decisions.
    """
    if not e164.startswith("+"):
        return None
    prefix = e164[1 : 1 + TIMEZONE_LONGEST_PREFIX]
    if prefix not in _ZONE_BY_PREFIX:
        if len(_ZONE_BY_PREFIX) >= _PREFIX_CACHE_SIZE:
            _ZONE_BY_PREFIX.clear()
        _ZONE_BY_PREFIX[prefix] = _zone_of(e164)
    return _ZONE_BY_PREFIX[prefix]


_ZONE_BY_PREFIX: dict[str, str | None] = {}
_PREFIX_CACHE_SIZE = 65536


def _zone_of(e164: str) -> str | None:
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return None
    zones = phone_timezone.time_zones_for_number(number)
    if len(zones) != 1 or zones[0] == phone_timezone.UNKNOWN_TIMEZONE:
        return None
    return zones[0] if zone_named(zones[0]) is not None else None


@lru_cache(maxsize=1024)
def zone_named(name: str) -> ZoneInfo | None:
    """The ZoneInfo for an IANA name, or None when the name is not a known zone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        # ValueError: a malformed key such as an absolute path or "../x".
        return None


def contact_zone(
    explicit: str | None, phone: str | None, schedule_zone: str | None, account_zone: str
) -> ZoneInfo:
    """The contact's zone: its own, else its phone's single zone, else the schedule's,
    else the account's.

    A name that is not a known IANA zone is passed over like a missing one; only the
    account's zone must be valid (ValueError otherwise).
    """
    for name in (explicit, zone_for_phone(phone) if phone else None, schedule_zone):
        if name and (zone := zone_named(name)) is not None:
            return zone
    zone = zone_named(account_zone)
    if zone is None:
        raise ValueError(f"account timezone {account_zone!r} is not a known IANA zone")
    return zone
