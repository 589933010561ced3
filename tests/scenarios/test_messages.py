"""Shortcodes and the opt-out phrase in what is sent (CONTRACT.md §2)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.scenarios.harness import Replay

AT = "2027-07-06T16:00:00Z"


@pytest.fixture(scope="module")
def codes(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("shortcodes")


def test_every_shortcode_in_an_sms_and_the_opt_out_phrase_last(codes: Replay) -> None:
    sms = codes.one("sms.send")
    assert (sms["time"], sms["data"]["to"], sms["data"]["from_line"]) == (
        AT,
        "+17205550142",
        "line-1",
    )
    assert sms["data"]["body"] == (
        "Maya Ortiz (CO) at +17205550142 / maya@example.com: call Sam Lee on +17205550999."
        " Reply STOP to opt out."
    )


def test_an_mms_ends_with_the_opt_out_phrase(codes: Replay) -> None:
    mms = codes.one("mms.send")
    assert (mms["time"], mms["data"]["to"], mms["data"]["media_url"]) == (
        AT,
        "+17205550142",
        "https://media.example.com/p.png",
    )
    assert mms["data"]["body"] == "Photo for Maya Reply STOP to opt out."


def test_an_email_gets_shortcodes_but_not_the_sms_phrase(codes: Replay) -> None:
    mail = codes.one("email.send")
    assert (mail["time"], mail["data"]["to"], mail["data"]["subject"]) == (
        AT,
        "maya@example.com",
        "Maya, your quote",
    )
    assert mail["data"]["body"] == "Dear Maya Ortiz, Sam Lee will call you."


def test_a_preview_dialer_message_with_shortcodes(codes: Replay) -> None:
    dial = codes.one("call.dial")
    data = dial["data"]
    assert (dial["time"], data["to"], data["mode"], data["ring_group"]) == (
        AT,
        "+17205550142",
        "preview",
        "rg-sales",
    )
    assert data["message"] == "Hey Sam Lee, calling Maya Ortiz from CO."


def test_a_ring_group_text_with_shortcodes(codes: Replay) -> None:
    notice = codes.one("notify.sms")
    assert (notice["time"], notice["data"]["to"]) == (AT, "rg-sales")
    assert notice["data"]["body"].startswith("New lead Maya Ortiz +17205550142")
