"""Phone numbers and the contact's time zone (CONTRACT.md §3: "The contact's time zone").

Everything here is called per contact, so the phone-to-zone lookup and the ZoneInfo
objects are cached.
"""

from __future__ import annotations

import re
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import PhoneMetadata
from phonenumbers import timezone as phone_timezone

__all__ = ["contact_zone", "in_us_or_canada", "normalize_phone", "zone_for_phone", "zone_named"]


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


def in_us_or_canada(e164: str) -> bool:
    """Whether a number is one of the US's (its territories included) or Canada's.

    Told by the country code and the area code, not by a full parse: fictional numbers such
    as 555-0100 are valid nowhere, yet they are plainly American. The North American plan
    (+1) also serves some twenty other countries (Jamaica's 876, the Bahamas' 242, …),
    named apart by their area codes in phonenumbers' metadata.
    """
    return e164.startswith("+1") and _OTHER_NANP_AREAS.match(e164, 2) is None


def _other_nanp_areas() -> re.Pattern[str]:
    """The area codes of the North American plan's countries other than the US, its
    territories and Canada, as phonenumbers lists them (`leading_digits`)."""
    us_or_canada = {"US", "CA", "PR", "VI", "GU", "AS", "MP"}
    patterns = []
    for region in phonenumbers.region_codes_for_country_code(1):
        metadata = PhoneMetadata.metadata_for_region(region)
        if region not in us_or_canada and metadata is not None and metadata.leading_digits:
            patterns.append(f"(?:{metadata.leading_digits})")
    return re.compile("|".join(patterns) or "(?!)")


_OTHER_NANP_AREAS = _other_nanp_areas()


def zone_for_phone(e164: str) -> str | None:
    """The IANA zone of a phone number when its prefix maps to exactly one zone, else None.

    None also for an invalid number, an unknown prefix, or a zone this machine's tz
    database does not know. The answer is cached per number, this runs for every step:
    not per leading digits, although zones are listed by prefix, as phonenumbers gives an
    invalid number (a digit short) no zone, so one number's answer is not another's.
    """
    if not e164.startswith("+"):
        return None
    if e164 in _RECENT_ZONES:
        return _RECENT_ZONES[e164]
    return _recall_zone(e164)


def _recall_zone(e164: str) -> str | None:
    """The cache's slow path: a number not looked up since the last rotation.

    Two generations rather than one dict emptied when full: a long history holds more
    numbers than the cache, and emptying it made every contact still enrolled parse its
    number again (in bursts that grew with the history). A rotation keeps the previous
    generation, and what is still looked up moves back into the new one, so the contacts
    in use stay cached.
    """
    global _RECENT_ZONES, _OLDER_ZONES
    zone = _OLDER_ZONES.pop(e164) if e164 in _OLDER_ZONES else _zone_of(e164)
    if len(_RECENT_ZONES) >= _GENERATION_SIZE:
        _OLDER_ZONES, _RECENT_ZONES = _RECENT_ZONES, {}
    _RECENT_ZONES[e164] = zone
    return zone


_RECENT_ZONES: dict[str, str | None] = {}
_OLDER_ZONES: dict[str, str | None] = {}
_GENERATION_SIZE = 65536  # per generation: the cache holds at most twice this


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
    if explicit and (zone := zone_named(explicit)) is not None:
        return zone  # the phone is looked up only when needed: this runs for every step
    for name in (zone_for_phone(phone) if phone else None, schedule_zone):
        if name and (zone := zone_named(name)) is not None:
            return zone
    zone = zone_named(account_zone)
    if zone is None:
        raise ValueError(f"account timezone {account_zone!r} is not a known IANA zone")
    return zone
