"""Steps that change the contact, fed back to every sequence's triggers (CONTRACT.md §1.2)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest

from tests.scenarios.harness import Replay


@pytest.fixture(scope="module")
def changes(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("steps_change_contact")


@pytest.fixture(scope="module")
def owners(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("owner_notices")


def _enrolled(run: Replay, sequence: str) -> tuple[str, str]:
    event = run.one("enrollment.enrolled", sequence_id=sequence, contact_id="c-1")
    return event["data"]["via"], event["time"]


def test_the_agent_name_is_the_owner_before_and_after_the_change(changes: Replay) -> None:
    sent = [(e["data"]["body"], e["time"]) for e in changes.of("sms.send", sequence_id="qualify")]
    assert sent == [
        ("Sam Lee here Reply STOP to opt out.", "2027-07-06T14:00:00Z"),
        ("This is Lee Chen Reply STOP to opt out.", "2027-07-06T14:30:00Z"),
    ]


def test_an_added_tag_enrolls_another_sequence(changes: Replay) -> None:
    tag = changes.one("contact.tag_added", tag="warm")
    assert (tag["source"], tag["subject"], tag["time"]) == (
        "dripstream",
        "c-1",
        "2027-07-06T14:00:00Z",
    )
    assert _enrolled(changes, "warm-leads") == ("contact_tagged", "2027-07-06T14:00:00Z")
    assert changes.one("email.send", sequence_id="warm-leads")["data"]["subject"] == (
        "Warm lead Ana"
    )


def test_a_changed_disposition_enrolls_one_sequence_and_removes_from_another(
    changes: Replay,
) -> None:
    change = changes.one("contact.disposition_changed")
    assert (change["source"], change["data"]["disposition"], change["time"]) == (
        "dripstream",
        "interested",
        "2027-07-06T14:10:00Z",
    )
    assert _enrolled(changes, "interested") == ("contact_disposition", "2027-07-06T14:10:00Z")
    notice = changes.one("notify.sms", sequence_id="interested")
    assert notice["data"]["to"] == "rg-sales"
    assert notice["data"]["body"].startswith("Ana is interested")
    out = changes.one("enrollment.disenrolled", sequence_id="cold-outreach")
    assert (out["data"]["reason"], out["time"]) == ("trigger", "2027-07-06T14:10:00Z")
    changes.none("sms.send", sequence_id="cold-outreach")


def test_the_owner_is_changed_by_the_engine(changes: Replay) -> None:
    owner = [e for e in changes.of("contact.updated") if "owner_id" in e["data"]]
    assert [(e["data"]["owner_id"], e["time"], e["source"]) for e in owner] == [
        ("u-9", "2027-07-06T14:20:00Z", "dripstream")
    ]


def test_a_new_owner_is_told_by_sms(changes: Replay) -> None:
    notice = changes.one("notify.sms", sequence_id="qualify")
    assert notice["data"]["to"] == "u-9"
    assert notice["data"]["contact_id"] == "c-1"
    # Notices may wait for the end of the minute, to know whether it was a crowd (> 20).
    assert "2027-07-06T14:20:00Z" <= notice["time"] <= "2027-07-06T14:21:00Z"


def test_mark_dnc_enrolls_the_dnc_sequence_and_skips_the_later_sms(changes: Replay) -> None:
    dnc = changes.one("contact.dnc_changed")
    assert (dnc["source"], dnc["data"]["dnc"], dnc["time"]) == (
        "dripstream",
        True,
        "2027-07-06T14:40:00Z",
    )
    assert _enrolled(changes, "dnc-watch") == ("dnc_changed", "2027-07-06T14:40:00Z")
    assert changes.one("notify.sms", sequence_id="dnc-watch")["data"]["body"].startswith("DNC: Ana")
    skipped = changes.one("step.skipped", sequence_id="qualify")
    assert (skipped["data"]["step_id"], skipped["data"]["reason"], skipped["time"]) == (
        "late",
        "dnc",
        "2027-07-06T15:40:00Z",
    )


def test_a_removed_tag_enrolls_the_tag_removed_sequence(changes: Replay) -> None:
    removed = changes.one("contact.tag_removed")
    assert (removed["source"], removed["data"]["tag"], removed["time"]) == (
        "dripstream",
        "new",
        "2027-07-06T15:45:00Z",
    )
    assert _enrolled(changes, "untagged") == ("tag_removed", "2027-07-06T15:45:00Z")
    assert changes.one("webhook.post")["data"]["url"] == "https://hooks.example.com/untagged"


def test_line_and_lead_source_are_updated_and_the_sequence_completes(changes: Replay) -> None:
    updates = {
        key: (e["data"][key], e["time"])
        for e in changes.of("contact.updated")
        for key in ("line_id", "lead_source")
        if key in e["data"]
    }
    assert updates == {
        "line_id": ("line-2", "2027-07-06T15:45:00Z"),
        "lead_source": ("expo", "2027-07-06T15:45:00Z"),
    }
    completed = changes.one("enrollment.completed", sequence_id="qualify")
    assert completed["time"] == "2027-07-06T15:45:00Z"


def test_twenty_assignments_in_a_minute_get_one_notice_each(owners: Replay) -> None:
    updates = owners.of("contact.updated", owner_id="u-8", sequence_id="assign-kim")
    assert len(updates) == 20
    notices = owners.of("notify.sms", sequence_id="assign-kim")
    assert {e["data"]["to"] for e in notices} == {"u-8"}
    assert sorted(e["data"]["contact_id"] for e in notices) == [f"c-k{i:02d}" for i in range(1, 21)]


def test_more_than_twenty_in_a_minute_become_one_summary(owners: Replay) -> None:
    assert len(owners.of("contact.updated", owner_id="u-9", sequence_id="assign-lee")) == 21
    notices = owners.of("notify.sms", to="u-9", sequence_id="assign-lee")
    assert len(notices) == 1
    assert "You have been assigned to a group of contacts" in notices[0]["data"]["body"]


def test_round_robin_takes_turns_and_notifies_each_owner(owners: Replay) -> None:
    turns = [
        (e["data"]["contact_id"], e["data"]["owner_id"])
        for e in owners.of("contact.updated", sequence_id="rr")
    ]
    assert turns == [
        ("c-r1", "u-7"),
        ("c-r2", "u-8"),
        ("c-r3", "u-9"),
        ("c-r4", "u-7"),
        ("c-r5", "u-8"),
        ("c-r6", "u-9"),
        ("c-r7", "u-7"),
    ]
    assert Counter(owner for _, owner in turns) == {"u-7": 3, "u-8": 2, "u-9": 2}
    notices = [
        (e["data"]["contact_id"], e["data"]["to"])
        for e in owners.of("notify.sms", sequence_id="rr")
    ]
    assert sorted(notices) == sorted(turns)


@pytest.fixture(scope="module")
def delayed(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("owner_notice_after_delay")


def test_a_delayed_owner_change_is_made_then_the_sms_names_the_new_owner(
    delayed: Replay,
) -> None:
    update = delayed.one("contact.updated", owner_id="u-9")
    assert update["time"] == "2027-07-06T14:05:00Z"
    sms = delayed.one("sms.send")
    assert (sms["data"]["body"], sms["time"]) == (
        "This is Lee Chen Reply STOP to opt out.",
        "2027-07-06T14:15:00Z",
    )


def test_the_delayed_owner_change_notice_comes_in_time_order(delayed: Replay) -> None:
    kinds = [e["type"] for e in delayed.events]
    notice = delayed.one("notify.sms", to="u-9")
    assert "2027-07-06T14:05:00Z" <= notice["time"] <= "2027-07-06T14:06:00Z"
    assert kinds.index("notify.sms") < kinds.index("sms.send")


@pytest.fixture(scope="module")
def midway(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("contact_updates_midway")


def test_each_step_reads_the_contact_as_it_is_then(midway: Replay) -> None:
    texts = [
        (e["data"]["to"], e["data"]["body"], e["time"])
        for e in midway.of("sms.send", contact_id="c-1")
    ]
    assert texts == [
        ("+12125550101", "Hi Ana Reply STOP to opt out.", "2027-07-06T14:00:00Z"),
        ("+12125550199", "Again Anna Reply STOP to opt out.", "2027-07-06T15:00:00Z"),
        ("+12125550199", "Last one Reply STOP to opt out.", "2027-07-06T17:00:00Z"),
    ]
    mail = midway.one("email.send", contact_id="c-1")
    assert (mail["data"]["to"], mail["data"]["subject"], mail["time"]) == (
        "anna@new.example.com",
        "For Anna",
        "2027-07-06T16:00:00Z",
    )


@pytest.mark.parametrize(("contact", "reason"), [("c-2", "dnc"), ("c-3", "opted_out")])
def test_a_lifted_dnc_or_opt_out_lets_later_steps_run(
    midway: Replay, contact: str, reason: str
) -> None:
    skipped = midway.one("step.skipped", contact_id=contact)
    assert (skipped["data"]["step_id"], skipped["data"]["reason"], skipped["time"]) == (
        "s2",
        reason,
        "2027-07-06T15:00:00Z",
    )
    assert midway.times("sms.send", contact_id=contact) == [
        "2027-07-06T14:00:00Z",
        "2027-07-06T17:00:00Z",
    ]
    assert midway.times("email.send", contact_id=contact) == ["2027-07-06T16:00:00Z"]


def test_everyone_completes_on_time(midway: Replay) -> None:
    assert midway.times("enrollment.completed") == ["2027-07-06T17:00:00Z"] * 3
    midway.none("enrollment.disenrolled")
