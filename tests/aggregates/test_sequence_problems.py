"""Sequence problems: a sequence that parses but names a line, ring group or user the account
does not define loads `invalid`, listing why; without such maps the names pass unchecked."""

from __future__ import annotations

from typing import Any

import pytest

from aggregates.sequence import Catalog, Sequence, build_account, unreached_members
from schemas.definitions import validate_definition_document
from tests.engine import helpers

ACCOUNT: dict[str, Any] = {
    "lines": {"line-1": "+12125550000"},
    "users": {
        "u-7": {"name": "Sam Lee", "phone": "+12125550007"},
        "u-8": {"name": "Kim Ode", "phone": "+12125550008"},
    },
    "ring_groups": {"rg-sales": ["u-7"], "rg-empty": [], "rg-ghosts": ["u-1", "u-2"]},
}
NO_MAPS: dict[str, Any] = {"timezone": "America/New_York"}


def loaded(*steps: dict[str, Any], account: dict[str, Any], **settings: Any) -> Sequence:
    """When a sequence with these steps is loaded under this account."""
    spec: dict[str, Any] = {
        "id": "seq",
        "name": "Test",
        "outbound_line": "line-1",
        "steps": [{"id": f"s{n}", **step} for n, step in enumerate(steps, start=1)],
        **settings,
    }
    doc = validate_definition_document({"account": account, "sequences": [spec]})
    return Catalog.from_document(doc).sequences["seq"]


SMS = {"type": "send_sms", "text": "Hi [FirstName]"}


def dialer(group: str) -> dict[str, Any]:
    return {"type": "progressive_dialer", "ring_group": group, "message": "Press 1"}


# --- the account defines them: unknown names are problems -------------------------------


def test_an_outbound_line_the_account_does_not_define_makes_the_sequence_invalid() -> None:
    sequence = loaded(SMS, account=ACCOUNT, outbound_line="line-9")
    assert sequence.status == "invalid"
    assert sequence.problems == ("outbound_line: unknown line 'line-9'",)


def test_an_unknown_ring_group_is_a_problem_of_its_step() -> None:
    sequence = loaded(dialer("rg-typo"), account=ACCOUNT)
    assert sequence.status == "invalid"
    assert sequence.problems == (
        "step s1 (progressive_dialer): unknown ring group 'rg-typo' in ring_group",
    )


def test_every_ring_group_step_type_is_checked() -> None:
    sequence = loaded(
        {"type": "preview_dialer", "ring_group": "rg-x", "message": "Press 1"},
        {"type": "sms_ring_group", "ring_group": "rg-x", "text": "Lead"},
        {"type": "email_ring_group", "ring_group": "rg-x", "subject": "Lead", "body": "See"},
        account=ACCOUNT,
    )
    assert sequence.problems == (
        "step s1 (preview_dialer): unknown ring group 'rg-x' in ring_group",
        "step s2 (sms_ring_group): unknown ring group 'rg-x' in ring_group",
        "step s3 (email_ring_group): unknown ring group 'rg-x' in ring_group",
    )


def test_a_ring_group_with_no_members_reaches_nobody() -> None:
    sequence = loaded(dialer("rg-empty"), account=ACCOUNT)
    assert sequence.problems == (
        "step s1 (progressive_dialer): ring group 'rg-empty' has no members",
    )


def test_a_ring_group_whose_members_are_no_users_reaches_nobody() -> None:
    sequence = loaded(dialer("rg-ghosts"), account=ACCOUNT)
    assert sequence.problems == (
        "step s1 (progressive_dialer): ring group 'rg-ghosts' has no member among the"
        " account's users",
    )


def test_a_ring_group_nobody_of_which_can_be_reached_that_way_reaches_nobody() -> None:
    account = {
        **ACCOUNT,
        "users": {
            "u-m": {"name": "Mail Only", "email": "m@example.com"},
            "u-p": {"name": "Phone Only", "phone": "+12125550009"},
        },
        "ring_groups": {"rg-mail": ["u-m"], "rg-phone": ["u-p"]},
    }
    sequence = loaded(
        {"type": "sms_ring_group", "ring_group": "rg-mail", "text": "Lead"},
        dialer("rg-mail"),
        {"type": "email_ring_group", "ring_group": "rg-phone", "subject": "Lead", "body": "See"},
        {"type": "email_ring_group", "ring_group": "rg-mail", "subject": "Lead", "body": "See"},
        {"type": "sms_ring_group", "ring_group": "rg-phone", "text": "Lead"},
        account=account,
    )
    assert sequence.problems == (
        "step s1 (sms_ring_group): ring group 'rg-mail' has no member with a phone",
        "step s2 (progressive_dialer): ring group 'rg-mail' has no member with a phone",
        "step s3 (email_ring_group): ring group 'rg-phone' has no member with an e-mail",
    )


def test_a_ring_group_member_not_reached_that_way_is_a_warning_not_a_problem() -> None:
    account = {
        **ACCOUNT,
        "users": {
            "u-m": {"name": "Mail Only", "email": "m@example.com"},
            "u-p": {"name": "Phone Only", "phone": "+12125550009"},
        },
        "ring_groups": {"rg-both": ["u-m", "u-p", "u-ghost"], "rg-mail": ["u-m"]},
    }
    both = {**account, "ring_groups": {"rg-both": ["u-m", "u-p"]}}
    sequence = loaded(
        {"type": "sms_ring_group", "ring_group": "rg-both", "text": "Lead"},
        {"type": "email_ring_group", "ring_group": "rg-both", "subject": "Lead", "body": "See"},
        {"type": "sms_ring_group", "ring_group": "rg-both", "text": "Again"},
        account=both,
    )
    assert sequence.status == "active"
    assert unreached_members(sequence, build_account(both)) == [
        "sequence 'seq': ring group 'rg-both' member 'u-m' has no phone,"
        " so step s1 (sms_ring_group) and step s3 (sms_ring_group) will not reach them",
        "sequence 'seq': ring group 'rg-both' member 'u-p' has no e-mail,"
        " so step s2 (email_ring_group) will not reach them",
    ]
    # A group that reaches nobody, or a member the account lacks, is a problem already.
    invalid = loaded(
        {"type": "sms_ring_group", "ring_group": "rg-mail", "text": "Lead"},
        {"type": "email_ring_group", "ring_group": "rg-both", "subject": "Lead", "body": "See"},
        account=account,
    )
    assert invalid.status == "invalid"
    assert unreached_members(invalid, build_account(account)) == [
        "sequence 'seq': ring group 'rg-both' member 'u-p' has no e-mail,"
        " so step s2 (email_ring_group) will not reach them"
    ]


def test_a_new_owner_the_account_does_not_define_is_a_problem() -> None:
    sequence = loaded({"type": "change_owner", "owner_id": "u-9"}, account=ACCOUNT)
    assert sequence.status == "invalid"
    assert sequence.problems == ("step s1 (change_owner): unknown user 'u-9' in owner_id",)


def test_each_unknown_round_robin_owner_is_listed() -> None:
    sequence = loaded(
        {"type": "round_robin_owner", "owners": ["u-7", "u-9", "u-8", "u-10"]}, account=ACCOUNT
    )
    assert sequence.problems == (
        "step s1 (round_robin_owner): unknown user 'u-9' in owners",
        "step s1 (round_robin_owner): unknown user 'u-10' in owners",
    )


def test_problems_of_several_kinds_are_all_listed_with_the_existing_ones() -> None:
    sequence = loaded(
        {"type": "send_sms", "text": "Hi [Nickname]"},
        dialer("rg-typo"),
        {"type": "change_owner", "owner_id": "u-9"},
        account=ACCOUNT,
        outbound_line="line-9",
    )
    assert sequence.problems == (
        "outbound_line: unknown line 'line-9'",
        "step s1 (send_sms): unknown shortcode [Nickname] in text",
        "step s2 (progressive_dialer): unknown ring group 'rg-typo' in ring_group",
        "step s3 (change_owner): unknown user 'u-9' in owner_id",
    )


def test_names_the_account_defines_leave_the_sequence_active() -> None:
    sequence = loaded(
        SMS,
        dialer("rg-sales"),
        {"type": "change_owner", "owner_id": "u-8"},
        {"type": "round_robin_owner", "owners": ["u-7", "u-8"]},
        account=ACCOUNT,
    )
    assert (sequence.status, sequence.problems) == ("active", ())


# --- the account defines none of a kind: the names pass as they are ---------------------


def test_without_account_maps_any_line_ring_group_and_owner_is_accepted() -> None:
    sequence = loaded(
        SMS,
        dialer("rg-anything"),
        {"type": "change_owner", "owner_id": "u-9"},
        {"type": "round_robin_owner", "owners": ["u-1", "u-2"]},
        account=NO_MAPS,
        outbound_line="line-anything",
    )
    assert (sequence.status, sequence.problems) == ("active", ())


def test_each_kind_is_checked_only_when_the_account_defines_that_kind() -> None:
    # given an account with lines only
    lines_only = {"lines": {"line-1": "+12125550000"}}
    # then ring groups and owners pass unchecked, and the line is still checked
    assert (
        loaded(
            dialer("rg-anything"), {"type": "change_owner", "owner_id": "u-9"}, account=lines_only
        ).problems
        == ()
    )
    assert loaded(SMS, account=lines_only, outbound_line="line-9").problems == (
        "outbound_line: unknown line 'line-9'",
    )
    # given ring groups whose members the account does not list as users
    groups_only = {"ring_groups": {"rg-sales": ["u-7"]}}
    assert loaded(dialer("rg-sales"), account=groups_only).problems == ()


def test_the_worked_example_stays_active() -> None:
    # given the contract's worked example, which names a line and ring group it never defines
    document = helpers.load_yaml(str(helpers.welcome_dir() / "welcome.yaml"))
    # then it loads active
    sequences = Catalog.from_document(document).sequences.values()
    assert [(s.id, s.status) for s in sequences] == [("welcome", "active")]


# --- through the engine -----------------------------------------------------------------


def test_nobody_is_enrolled_in_a_sequence_naming_an_unknown_owner() -> None:
    # given a sequence that hands contacts to a user the account does not have
    defs = helpers.definitions(
        helpers.sequence(steps=[{"id": "s1", "type": "change_owner", "owner_id": "u-9"}])
    )
    # when a contact meets its trigger
    out = helpers.decide(
        defs,
        [
            helpers.event("contact.created", "2027-07-05T14:00:00Z", contact_id="c-1"),
            helpers.event("contact.tag_added", "2027-07-05T14:01:00Z", contact_id="c-1", tag="hot"),
        ],
    )
    # then the sequence is invalid, says why, and the contact is rejected, not reassigned
    defined = out.one("sequence.defined")["data"]
    assert (defined["status"], defined["problems"]) == (
        "invalid",
        ["step s1 (change_owner): unknown user 'u-9' in owner_id"],
    )
    assert out.one("enrollment.rejected")["data"]["reason"] == "sequence_invalid"
    assert out.of("contact.updated") == []


def test_an_added_line_the_account_does_not_define_is_a_problem() -> None:
    sequence = loaded(SMS, {"type": "add_line", "line_id": "line-9"}, account=ACCOUNT)
    assert sequence.problems == ("step s2 (add_line): unknown line 'line-9' in line_id",)
    assert loaded({"type": "add_line", "line_id": "line-1"}, account=ACCOUNT).status == "active"


def test_a_call_duration_trigger_that_would_enroll_is_a_problem() -> None:
    # CONTRACT.md §2: call_duration disenrolls; `enroll` there must not be taken silently.
    trigger = {"type": "call_duration", "metric": "talk_time", "seconds": 60}
    enrolling = loaded(SMS, account=ACCOUNT, triggers=[{**trigger, "action": "enroll"}])
    assert enrolling.problems == ("trigger 1 (call_duration): action must be disenroll",)
    for fine in (trigger, {**trigger, "action": "disenroll"}):
        assert loaded(SMS, account=ACCOUNT, triggers=[fine]).status == "active"


# --- what cannot run whatever the account defines ---------------------------------------


@pytest.mark.parametrize(
    "step",
    [
        SMS,
        {"type": "send_mms", "media_url": "https://example.com/a.png"},
        {"type": "sms_ring_group", "ring_group": "rg-sales", "text": "x"},
    ],
    ids=lambda step: step["type"],
)
def test_every_texting_step_needs_the_outbound_line(step: dict[str, Any]) -> None:
    sequence = loaded(step, account=ACCOUNT, outbound_line=None)
    assert sequence.status == "invalid"
    assert f"step s1 ({step['type']}): needs the sequence's outbound_line" in sequence.problems


@pytest.mark.parametrize(
    ("step", "key"),
    [
        ({**dialer("rg-sales"), "message": "Call [Nickname]"}, "message"),
        ({"type": "email_contact", "subject": "Hi [Nickname]", "body": "b"}, "subject"),
    ],
)
def test_an_unknown_shortcode_in_any_text_is_a_problem(step: dict[str, Any], key: str) -> None:
    sequence = loaded(step, account=ACCOUNT)
    problem = f"step s1 ({step['type']}): unknown shortcode [Nickname] in {key}"
    assert sequence.problems == (problem,)


def test_open_hours_ending_where_the_quiet_hours_begin_never_meet_them() -> None:
    account = {**ACCOUNT, "quiet_hours": {"start": "17:00", "end": "21:00"}}
    sequence = loaded(SMS, account=account, schedule={"open": "09:00", "close": "17:00"})
    assert sequence.status == "invalid"
    assert any("never meet the account's quiet hours" in p for p in sequence.problems)


def test_a_text_longer_than_an_sms_can_hold_with_the_opt_out_phrase_is_a_problem() -> None:
    # given the account's phrase "Reply STOP to opt out." (22 characters, after one space)
    account = {**ACCOUNT, "opt_out_phrase": "Reply STOP to opt out."}
    fits = loaded({"type": "send_sms", "text": "x" * 1577}, account=account)
    over = loaded(
        {"type": "send_mms", "text": "x" * 1578, "media_url": "https://e.x/a.png"}, account=account
    )
    # then 1,577 + 1 + 22 = 1,600 runs, and one character more cannot
    assert fits.status == "active"
    assert over.problems == (
        "step s1 (send_mms): text is 1601 characters with the opt-out phrase"
        " (an SMS holds at most 1600)",
    )


def test_a_ring_group_text_is_measured_without_the_opt_out_phrase() -> None:
    step = {"type": "sms_ring_group", "ring_group": "rg-sales", "text": "y" * 1601}
    sequence = loaded(step, account=ACCOUNT)
    assert sequence.problems == (
        "step s1 (sms_ring_group): text is 1601 characters (an SMS holds at most 1600)",
    )
    assert loaded({**step, "text": "y" * 1600}, account=ACCOUNT).status == "active"


# --- ringless voicemail is for verified accounts (the seed) -------------------------------

VOICEMAIL = {"type": "ringless_voicemail", "recording_url": "https://example.com/vm.mp3"}


def test_ringless_voicemail_under_an_account_not_verified_for_it_is_invalid() -> None:
    sequence = loaded(VOICEMAIL, account={**ACCOUNT, "ringless_voicemail_verified": False})
    assert sequence.status == "invalid"
    assert sequence.problems == (
        "step s1 (ringless_voicemail): the account is not verified for ringless voicemail"
        " (account.ringless_voicemail_verified)",
    )


@pytest.mark.parametrize("verified", [{}, {"ringless_voicemail_verified": True}])
def test_ringless_voicemail_runs_under_a_verified_account_or_one_that_does_not_say(
    verified: dict[str, Any],
) -> None:
    assert loaded(VOICEMAIL, account={**ACCOUNT, **verified}).status == "active"
    # and the setting says nothing of sequences without a voicemail step
    assert loaded(SMS, account={**ACCOUNT, "ringless_voicemail_verified": False}).problems == ()


def test_a_ring_group_naming_a_user_the_account_does_not_define_is_a_problem() -> None:
    account = {**ACCOUNT, "ring_groups": {"rg-sales": ["u-7", "u-99"]}}
    sequence = loaded(dialer("rg-sales"), account=account)
    assert sequence.problems == (
        "step s1 (progressive_dialer): unknown user 'u-99' in ring group 'rg-sales'",
    )


@pytest.mark.parametrize("kind", ["power_dialer", "remove_from_power_dialer"])
def test_a_power_dialer_user_the_account_does_not_define_is_a_problem(kind: str) -> None:
    assert loaded({"type": kind, "user_id": "u-99"}, account=ACCOUNT).problems == (
        f"step s1 ({kind}): unknown user 'u-99' in user_id",
    )
    assert loaded({"type": kind, "user_id": "u-7"}, account=ACCOUNT).problems == ()
    assert loaded({"type": kind}, account=ACCOUNT).problems == ()  # the contact's owner


@pytest.mark.parametrize(
    ("written", "meant"),
    [
        ("[First Name]", "[FirstName]"),
        ("[first_name]", "[FirstName]"),
        ("[ FirstName ]", "[FirstName]"),
        ("{FirstName}", "[FirstName]"),
        ("[tracking-number]", "[TrackingNumber]"),
        ("{agent name}", "[AgentName]"),
    ],
)
def test_a_shortcode_written_another_way_is_a_problem_naming_the_right_one(
    written: str, meant: str
) -> None:
    # Sent as written, the contact would read the bracket and the typo.
    sequence = loaded({"type": "send_sms", "text": f"Hi {written}!"}, account=ACCOUNT)
    assert sequence.problems == (
        f"step s1 (send_sms): {written} in text is no shortcode: write {meant}",
    )


@pytest.mark.parametrize("text", ["Hi [FirstName]", "Reply [YES] or [1]", "Call {us} [9am]"])
def test_brackets_that_spell_no_shortcode_are_plain_text(text: str) -> None:
    problems = loaded({"type": "send_sms", "text": text}, account=ACCOUNT).problems
    assert [p for p in problems if "shortcode" in p] == (
        ["step s1 (send_sms): unknown shortcode [YES] in text"] if "[YES]" in text else []
    )


@pytest.mark.parametrize(("opens", "closes"), [("22:00", "06:00"), ("09:00", "09:00")])
def test_hours_that_close_before_they_open_make_the_sequence_invalid(
    opens: str, closes: str
) -> None:
    # CONTRACT.md §2: such a sequence parses but cannot run, so it loads invalid rather
    # than refusing the file its other sequences are in.
    schedule = {"timezone": "America/New_York", "open": opens, "close": closes}
    sequence = loaded({"type": "send_sms", "text": "Hi"}, account=ACCOUNT, schedule=schedule)
    overnight = "; hours past midnight are not supported" if closes < opens else ""
    assert sequence.problems == (
        f"schedule: close ({closes}) must be after open ({opens}){overnight}",
    )
    assert sequence.open_hours is None


def test_a_picture_mms_needs_no_words() -> None:
    picture = {"type": "send_mms", "media_url": "https://x.example/a.png"}
    assert loaded(picture, account=ACCOUNT).problems == ()
    assert loaded({**picture, "text": "  "}, account=ACCOUNT).problems == ()


@pytest.mark.parametrize(
    ("step", "key"),
    [
        ({"type": "send_sms", "text": ""}, "text"),
        ({"type": "sms_ring_group", "ring_group": "rg-sales", "text": ""}, "text"),
        ({"type": "email_contact", "subject": "Hi", "body": ""}, "body"),
        (
            {"type": "email_ring_group", "ring_group": "rg-sales", "subject": "s", "body": " "},
            "body",
        ),
    ],
)
def test_a_message_with_nothing_to_say_is_a_problem(step: dict[str, Any], key: str) -> None:
    # An SMS of only the opt-out phrase, a blank e-mail (to a group that has an address).
    reachable = {"name": "Sam Lee", "phone": "+12125550007", "email": "sam@example.com"}
    sequence = loaded(step, account={**ACCOUNT, "users": {"u-7": reachable}})
    assert sequence.problems == (f"step s1 ({step['type']}): {key} is empty",)
