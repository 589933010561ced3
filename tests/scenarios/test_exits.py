"""Who leaves a sequence, and why (CONTRACT.md §1.2 reasons, §1 keywords, the seed)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.scenarios.harness import Replay


@pytest.fixture(scope="module")
def response(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("exit_on_response")


@pytest.fixture(scope="module")
def manual(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("exit_manual_call_and_opt_out")


@pytest.fixture(scope="module")
def deleted(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("exit_sequence_deleted")


@pytest.fixture(scope="module")
def keywords(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("stop_start_keywords")


@pytest.mark.parametrize(
    ("contact", "time"),
    [
        ("c-sms", "2027-07-06T14:30:00Z"),
        ("c-email", "2027-07-06T14:40:00Z"),
        ("c-inbound-call", "2027-07-06T14:50:00Z"),
        ("c-answered", "2027-07-06T15:00:00Z"),
        ("c-same", "2027-07-06T16:00:00Z"),
    ],
)
def test_a_response_removes_the_contact(response: Replay, contact: str, time: str) -> None:
    out = response.one("enrollment.disenrolled", contact_id=contact)
    assert (out["data"]["sequence_id"], out["data"]["reason"], out["time"]) == (
        "chase",
        "responded",
        time,
    )
    assert response.times("sms.send", contact_id=contact) == ["2027-07-06T14:00:00Z"]
    response.none("enrollment.completed", contact_id=contact)


def test_no_response_runs_to_the_end(response: Replay) -> None:
    assert response.times("sms.send", contact_id="c-quiet") == [
        "2027-07-06T14:00:00Z",
        "2027-07-06T16:00:00Z",
    ]
    assert response.one("enrollment.completed", contact_id="c-quiet")["time"] == (
        "2027-07-06T16:00:00Z"
    )


def test_remove_on_response_off_keeps_the_contact(response: Replay) -> None:
    response.none("enrollment.disenrolled", contact_id="c-steady")
    assert response.times("sms.send", contact_id="c-steady") == [
        "2027-07-06T14:00:00Z",
        "2027-07-06T16:00:00Z",
    ]


def test_a_manual_call_removes_only_where_asked(manual: Replay) -> None:
    out = manual.one("enrollment.disenrolled", contact_id="c-1")
    assert (out["data"]["sequence_id"], out["data"]["reason"], out["time"]) == (
        "strict",
        "manual_call",
        "2027-07-06T14:20:00Z",
    )
    manual.none("sms.send", contact_id="c-1", sequence_id="strict")
    assert [
        (e["data"]["body"], e["time"])
        for e in manual.of("sms.send", contact_id="c-1", sequence_id="lenient")
    ] == [
        ("One Reply STOP to opt out.", "2027-07-06T15:00:00Z"),
        ("Two Reply STOP to opt out.", "2027-07-06T16:00:00Z"),
    ]


def test_an_opt_out_removes_or_skips(manual: Replay) -> None:
    out = manual.one("enrollment.disenrolled", contact_id="c-2")
    assert (out["data"]["sequence_id"], out["data"]["reason"], out["time"]) == (
        "strict",
        "opted_out",
        "2027-07-06T14:30:00Z",
    )
    skipped = [
        (e["data"]["step_id"], e["data"]["reason"], e["time"])
        for e in manual.of("step.skipped", contact_id="c-2", sequence_id="lenient")
    ]
    assert skipped == [
        ("s1", "opted_out", "2027-07-06T15:00:00Z"),
        ("s2", "opted_out", "2027-07-06T16:00:00Z"),
    ]
    manual.none("sms.send", contact_id="c-2")
    completed = manual.one("enrollment.completed", contact_id="c-2")
    assert (completed["data"]["sequence_id"], completed["time"]) == (
        "lenient",
        "2027-07-06T16:00:00Z",
    )


def test_deleting_a_sequence_ends_its_enrollments(deleted: Replay) -> None:
    removed = deleted.of("enrollment.disenrolled")
    assert sorted(e["data"]["contact_id"] for e in removed) == ["c-1", "c-2"]
    assert {(e["data"]["sequence_id"], e["data"]["reason"], e["time"]) for e in removed} == {
        ("retire", "sequence_deleted", "2027-07-06T15:00:00Z")
    }
    assert deleted.one("sequence.deleted")["data"]["sequence_id"] == "retire"


def test_a_deleted_sequence_enrolls_and_sends_nothing(deleted: Replay) -> None:
    assert deleted.contacts("enrollment.enrolled", sequence_id="retire") == ["c-1", "c-2"]
    deleted.none("sms.send", sequence_id="retire")
    deleted.none("enrollment.rejected")
    assert [(e["data"]["contact_id"], e["time"]) for e in deleted.of("sms.send")] == [
        ("c-1", "2027-07-07T14:00:00Z"),
        ("c-2", "2027-07-07T14:00:00Z"),
        ("c-3", "2027-07-07T16:00:00Z"),
    ]


@pytest.mark.parametrize("contact", [f"c-k{i}" for i in range(1, 9)])
def test_each_opt_out_keyword_opts_out_and_removes(keywords: Replay, contact: str) -> None:
    opted = keywords.one("contact.opted_out", contact_id=contact)
    assert (opted["source"], opted["subject"], opted["data"]["channel"], opted["time"]) == (
        "dripstream",
        contact,
        "sms",
        "2027-07-06T14:10:00Z",
    )
    out = keywords.one("enrollment.disenrolled", contact_id=contact)
    assert out["data"]["reason"] == "opted_out"


@pytest.mark.parametrize("contact", ["c-phrase", "c-email"])
def test_not_a_keyword_is_just_a_response(keywords: Replay, contact: str) -> None:
    keywords.none("contact.opted_out", contact_id=contact)
    assert keywords.one("enrollment.disenrolled", contact_id=contact)["data"]["reason"] == (
        "responded"
    )


def test_start_opts_back_in_and_the_contact_can_enroll_again(keywords: Replay) -> None:
    rejected = keywords.one("enrollment.rejected", contact_id="c-back")
    assert (rejected["data"]["reason"], rejected["time"]) == ("opted_out", "2027-07-06T14:20:00Z")
    opted_in = keywords.one("contact.opted_in", contact_id="c-back")
    assert (opted_in["source"], opted_in["time"]) == ("dripstream", "2027-07-06T14:30:00Z")
    assert opted_in["data"].get("channel", "sms") == "sms"
    assert keywords.times("enrollment.enrolled", contact_id="c-back") == [
        "2027-07-06T14:00:00Z",
        "2027-07-06T14:40:00Z",
    ]
    assert [(e["data"]["body"], e["time"]) for e in keywords.of("sms.send", contact_id="c-back")][
        -1
    ] == ("Hi Back Reply STOP to opt out.", "2027-07-06T14:40:00Z")


@pytest.mark.parametrize("contact", ["c-yes", "c-unstop"])
def test_yes_and_unstop_opt_back_in(keywords: Replay, contact: str) -> None:
    assert keywords.times("contact.opted_out", contact_id=contact) == ["2027-07-06T14:10:00Z"]
    assert keywords.times("contact.opted_in", contact_id=contact) == ["2027-07-06T14:30:00Z"]


def test_keyword_totals(keywords: Replay) -> None:
    assert len(keywords.of("contact.opted_out")) == 11
    assert len(keywords.of("contact.opted_in")) == 3
