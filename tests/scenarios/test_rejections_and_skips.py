"""Enrollment rejections and skipped steps (CONTRACT.md §1.2, §2)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.scenarios.harness import Replay, sequences_list


@pytest.fixture(scope="module")
def rejections(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("rejections")


@pytest.fixture(scope="module")
def skips(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("skips")


def _rejected(run: Replay, sequence: str) -> list[tuple[str, str, str]]:
    return [
        (e["data"]["contact_id"], e["data"]["reason"], e["time"])
        for e in run.of("enrollment.rejected", sequence_id=sequence)
    ]


def test_already_enrolled(rejections: Replay) -> None:
    assert rejections.times("enrollment.enrolled", sequence_id="once") == ["2027-07-06T14:00:00Z"]
    assert _rejected(rejections, "once") == [("c-1", "already_enrolled", "2027-07-06T14:05:00Z")]


@pytest.mark.parametrize(
    ("sequence", "named"),
    [
        ("broken-line", "outbound_line"),
        ("broken-code", "[Nickname]"),
        ("broken-group", "ring_group"),
    ],
)
def test_an_invalid_sequence_lists_its_problem_and_enrolls_nobody(
    rejections: Replay, sequence: str, named: str
) -> None:
    defined = rejections.one("sequence.defined", sequence_id=sequence)
    assert defined["data"]["status"] == "invalid"
    assert any(named in problem for problem in defined["data"]["problems"])
    assert _rejected(rejections, sequence) == [("c-2", "sequence_invalid", "2027-07-06T14:10:00Z")]
    rejections.none("enrollment.enrolled", sequence_id=sequence)


def test_nothing_is_sent_for_invalid_sequences(rejections: Replay) -> None:
    # given c-2 was asked into the invalid sequences, and refused
    assert rejections.of("enrollment.rejected", contact_id="c-2")
    for kind in ("sms.send", "call.dial", "step.scheduled"):
        rejections.none(kind, contact_id="c-2")


def test_the_sequences_list_shows_the_status(rejections: Replay) -> None:
    rows = sequences_list(rejections.out)
    status = {sequence: row["status"] for sequence, row in rows.items()}
    assert status == {
        "once": "active",
        "broken-line": "invalid",
        "broken-code": "invalid",
        "broken-group": "invalid",
        "office-only": "active",
        "respect-optout": "active",
        "ignore-optout": "active",
        "fresh-only": "active",
        "fresh-any": "active",
    }


def test_enroll_only_within_hours(rejections: Replay) -> None:
    assert _rejected(rejections, "office-only") == [
        ("c-3", "outside_hours", "2027-07-06T12:00:00Z"),
        ("c-5", "outside_hours", "2027-07-06T21:00:00Z"),
    ]
    assert rejections.contacts("enrollment.enrolled", sequence_id="office-only") == ["c-4"]
    assert rejections.times("email.send", contact_id="c-4") == ["2027-07-06T14:00:00Z"]


def test_opted_out_is_rejected_only_where_the_sequence_removes_opt_outs(
    rejections: Replay,
) -> None:
    assert _rejected(rejections, "respect-optout") == [("c-6", "opted_out", "2027-07-06T14:00:00Z")]
    assert rejections.contacts("enrollment.enrolled", sequence_id="ignore-optout") == ["c-6"]
    skipped = rejections.one("step.skipped", contact_id="c-6")
    assert (skipped["data"]["sequence_id"], skipped["data"]["reason"]) == (
        "ignore-optout",
        "opted_out",
    )
    rejections.none("sms.send", contact_id="c-6")


def test_communicated_contacts_are_kept_out_when_asked(rejections: Replay) -> None:
    assert _rejected(rejections, "fresh-only") == [
        ("c-7", "communicated", "2027-07-06T14:00:00Z"),
        ("c-8", "communicated", "2027-07-06T14:00:00Z"),
    ]
    assert rejections.contacts("enrollment.enrolled", sequence_id="fresh-only") == ["c-9"]
    assert rejections.contacts("enrollment.enrolled", sequence_id="fresh-any") == [
        "c-7",
        "c-8",
        "c-9",
    ]


DUE = {
    "sms": "2027-07-06T14:00:00Z",
    "mail": "2027-07-06T14:30:00Z",
    "dial": "2027-07-06T15:30:00Z",
    "vm": "2027-07-06T15:40:00Z",
    "pd": "2027-07-06T15:40:00Z",
    "tag": "2027-07-06T15:55:00Z",
}
COMMAND = {
    "sms": "sms.send",
    "mail": "email.send",
    "dial": "call.dial",
    "vm": "voicemail.drop",
    "pd": "power_dialer.added",
    "tag": "contact.tag_added",
}


@pytest.mark.parametrize(
    ("contact", "skipped"),
    [
        ("c-dnc", {"sms": "dnc", "mail": "dnc", "dial": "dnc", "vm": "dnc", "pd": "dnc"}),
        ("c-nosms", {"sms": "opted_out"}),
        ("c-nomail", {"mail": "opted_out"}),
        ("c-allout", {"sms": "opted_out", "mail": "opted_out"}),
        ("c-nophone", {"sms": "missing_phone", "dial": "missing_phone", "vm": "missing_phone"}),
        ("c-noemail", {"mail": "missing_email"}),
    ],
)
def test_skips_count_as_done_at_their_due_moment(
    skips: Replay, contact: str, skipped: dict[str, str]
) -> None:
    for step, due in DUE.items():
        if contact == "c-nophone" and step == "pd":
            continue  # not pinned down by the contract
        if step in skipped:
            event = skips.one("step.skipped", contact_id=contact, step_id=step)
            assert (event["data"]["reason"], event["time"]) == (skipped[step], due), step
            skips.none(COMMAND[step], contact_id=contact)
        else:
            assert skips.times(COMMAND[step], contact_id=contact) == [due], step
            skips.none("step.skipped", contact_id=contact, step_id=step)
    assert skips.one("enrollment.completed", contact_id=contact)["time"] == DUE["tag"]


def test_the_added_tag_comes_from_the_engine(skips: Replay) -> None:
    tags = skips.of("contact.tag_added", tag="touched")
    assert len(tags) == 6
    assert {e["source"] for e in tags} == {"dripstream"}


@pytest.fixture(scope="module")
def communicated(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("communicated_edges")


def test_automated_outreach_alone_is_not_the_contact_communicating(communicated: Replay) -> None:
    enrolled = communicated.one("enrollment.enrolled", sequence_id="fresh-only")
    assert (enrolled["data"]["contact_id"], enrolled["time"]) == ("c-a", "2027-07-06T14:10:00Z")
    assert communicated.times("sms.send", contact_id="c-a") == [
        "2027-07-06T14:00:00Z",
        "2027-07-06T14:10:00Z",
    ]


def test_an_email_or_a_missed_call_from_the_contact_is_communicating(
    communicated: Replay,
) -> None:
    assert _rejected(communicated, "fresh-only") == [
        ("c-b", "communicated", "2027-07-06T14:10:00Z"),
        ("c-c", "communicated", "2027-07-06T14:10:00Z"),
    ]
