"""Phone numbers and the contact's time zone (CONTRACT.md §3)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from aggregates import timezones
from aggregates.timezones import contact_zone, normalize_phone, zone_for_phone


@pytest.mark.parametrize(
    ("text", "e164"),
    [
        ("+17205550142", "+17205550142"),
        ("(720) 555-0142", "+17205550142"),
        ("720.555.0142", "+17205550142"),
        ("1 720 555 0142", "+17205550142"),
        ("+44 20 7123 4567", "+442071234567"),
    ],
)
def test_a_valid_number_normalizes_to_e164(text: str, e164: str) -> None:
    assert normalize_phone(text) == e164


def test_a_national_number_is_read_in_the_default_region() -> None:
    assert normalize_phone("020 7123 4567", default_region="GB") == "+442071234567"


@pytest.mark.parametrize("text", ["", "hello", "555", "+1 000 555 0142", "+99912345"])
def test_an_invalid_number_normalizes_to_none(text: str) -> None:
    assert normalize_phone(text) is None


def test_a_denver_area_code_gives_denver() -> None:
    assert zone_for_phone("+17205550142") == "America/Denver"


def test_an_area_code_spanning_two_zones_gives_none() -> None:
    # 208 (Idaho) is split between Mountain and Pacific time
    assert zone_for_phone("+12085550142") is None


def test_a_london_number_gives_london() -> None:
    assert zone_for_phone("+442071234567") == "Europe/London"


@pytest.mark.parametrize("text", ["not a number", "+1", "+10005550142", "7205550142"])
def test_an_invalid_or_non_e164_number_gives_none(text: str) -> None:
    assert zone_for_phone(text) is None


def test_the_contact_s_own_zone_comes_first() -> None:
    zone = contact_zone("Europe/Berlin", "+17205550142", "America/Chicago", "America/New_York")
    assert zone == ZoneInfo("Europe/Berlin")


def test_then_the_phone_s_single_zone() -> None:
    zone = contact_zone(None, "+17205550142", "America/Chicago", "America/New_York")
    assert zone == ZoneInfo("America/Denver")


def test_then_the_schedule_s_zone_when_the_phone_is_ambiguous_or_missing() -> None:
    assert contact_zone(None, "+12085550142", "America/Chicago", "America/New_York") == ZoneInfo(
        "America/Chicago"
    )
    assert contact_zone(None, None, "America/Chicago", "America/New_York") == ZoneInfo(
        "America/Chicago"
    )


def test_then_the_account_s_zone() -> None:
    assert contact_zone(None, None, None, "America/New_York") == ZoneInfo("America/New_York")
    assert contact_zone("", "", "", "America/New_York") == ZoneInfo("America/New_York")


def test_an_unknown_zone_name_is_passed_over() -> None:
    zone = contact_zone("Mars/Olympus_Mons", None, "../etc/passwd", "America/New_York")
    assert zone == ZoneInfo("America/New_York")


def test_an_unknown_account_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="account timezone"):
        contact_zone(None, None, None, "Nowhere/Special")


def test_zone_objects_are_shared() -> None:
    first = contact_zone("America/Denver", None, None, "UTC")
    assert contact_zone("America/Denver", None, None, "UTC") is first


def test_the_phone_zone_cache_keeps_the_numbers_in_use_when_it_rotates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Generations of 3: twelve numbers rotate it many times; the answers stay those of a
    # fresh lookup, and a number looked up in every round is parsed only the first time.
    monkeypatch.setattr(timezones, "_GENERATION_SIZE", 3)
    monkeypatch.setattr(timezones, "_RECENT_ZONES", {})
    monkeypatch.setattr(timezones, "_OLDER_ZONES", {})
    parsed: list[str] = []
    parse = timezones._zone_of

    def counting(e164: str) -> str | None:
        parsed.append(e164)
        return parse(e164)

    monkeypatch.setattr(timezones, "_zone_of", counting)
    regular = "+17205550142"
    others = [f"+1{area}55{n}0142" for area in (212, 312, 208, 415) for n in range(3)]
    for number in others:
        assert zone_for_phone(regular) == "America/Denver"
        assert zone_for_phone(number) == parse(number)
    assert parsed.count(regular) == 1
    assert len(parsed) == 1 + len(others)


def test_a_numbers_zone_does_not_depend_on_the_numbers_looked_up_before() -> None:
    # A digit short, a number shares all its leading digits with a valid one, yet is no
    # valid number and has no zone: the answer for one must not be cached for the other.
    short, valid = "+1212555010", "+12125550100"
    assert zone_for_phone(short) is None
    assert zone_for_phone(valid) == "America/New_York"
    assert zone_for_phone(short) is None


def test_a_contact_with_its_own_zone_needs_no_phone_lookup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(e164: str) -> str | None:
        raise AssertionError(f"looked up {e164}")

    monkeypatch.setattr(timezones, "zone_for_phone", refuse)
    zone = contact_zone("Europe/Berlin", "+17205550142", "America/Chicago", "America/New_York")
    assert zone == ZoneInfo("Europe/Berlin")
