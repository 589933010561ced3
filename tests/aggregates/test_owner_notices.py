"""Owner notices: one SMS per new contact, or one summary for more than 20 in a minute."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aggregates.contact import ContactState
from aggregates.owner_notices import Assignment, OwnerNotices, describe, window_of
from aggregates.sequence import build_account

ACCOUNT = build_account(
    {
        "timezone": "America/New_York",
        "lines": {"line-1": "+12125550000"},
        "users": {"u-7": {"name": "Sam Lee", "phone": "+12125550007"}},
    }
)
AT = datetime(2027, 7, 2, 14, 30, 25, tzinfo=UTC)
SENT = datetime(2027, 7, 2, 14, 31, tzinfo=UTC)


def _assigned(contact: str, enrollment: str = "", at: datetime = AT) -> Assignment:
    fx = f"fx:seq:{contact}:1:owner:1"
    return Assignment(
        contact, enrollment, "owner", fx, at, describe(ContactState(contact_id=contact))
    )


def _gathered(count: int) -> OwnerNotices:
    notices = OwnerNotices()
    window = window_of("seq", "u-7", AT)
    ana = ContactState(contact_id="c-0", first_name="Ana", phone="+12125550100")
    notices.assign(
        window, Assignment("c-0", "seq~c-0~1", "owner", "fx:seq:c-0:1:owner:1", AT, describe(ana))
    )
    for n in range(1, count):
        notices.assign(window, _assigned(f"c-{n}", f"seq~c-{n}~1"))
    return notices


def _close(notices: OwnerNotices) -> list[dict[str, object]]:
    closed = notices.close(window_of("seq", "u-7", AT), SENT, account=ACCOUNT, line="line-1")
    assert all(n.type == "notify.sms" and n.at == SENT for n in closed)
    return [dict(n.payload) for n in closed]


def test_a_window_is_the_utc_minute_of_one_owner_in_one_sequence() -> None:
    notices = OwnerNotices()
    first = notices.assign(window_of("seq", "u-7", AT), _assigned("c-1"))
    same_minute = datetime(2027, 7, 2, 14, 30, 59, tzinfo=UTC)
    again = notices.assign(window_of("seq", "u-7", same_minute), _assigned("c-2"))
    other_owner = notices.assign(window_of("seq", "u-8", AT), _assigned("c-3"))
    assert (first, again, other_owner) == (True, False, True)
    assert len(notices) == 2


def test_twenty_assignments_are_twenty_notices_naming_each_contact() -> None:
    payloads = _close(_gathered(20))
    assert len(payloads) == 20
    assert payloads[0]["body"] == "You have been assigned a new contact: Ana, +12125550100."
    assert payloads[1]["body"] == "You have been assigned a new contact: c-1."
    assert payloads[0]["ring_group_numbers"] == ["+12125550007"]
    assert payloads[0]["from_number"] == "+12125550000"
    assert len({p["effect_id"] for p in payloads}) == 20


def test_twenty_one_assignments_are_one_summary() -> None:
    payloads = _close(_gathered(21))
    assert len(payloads) == 1
    assert payloads[0]["body"] == "You have been assigned to a group of contacts"
    assert payloads[0]["contact_ids"] == sorted(f"c-{n}" for n in range(21))  # same moment: by id


def test_a_window_is_told_once() -> None:
    notices = _gathered(2)
    assert len(_close(notices)) == 2
    assert _close(notices) == []


def test_a_window_opened_again_after_it_was_told_is_told_under_other_ids() -> None:
    # given a minute of 21 assignments told as a summary
    notices = _gathered(21)
    first = _close(notices)
    # when late inputs assign 21 more in that minute, and it is told again
    window = window_of("seq", "u-7", AT)
    for n in range(21):
        notices.assign(window, _assigned(f"c-{n}", f"seq~c-{n}~2"))
    second = _close(notices)
    # then the second summary is another effect, and the windows know they were told twice
    assert [p["effect_id"] for p in first + second] == [
        "fx:seq:owner:u-7:2027-07-02T14:30:00Z:summary",
        "fx:seq:owner:u-7:2027-07-02T14:30:00Z:summary:2",
    ]
    assert notices.told(window) == 2
    assert notices.told(window_of("seq", "u-8", AT)) == 0


def test_a_told_window_is_forgotten_a_day_later() -> None:
    notices = _gathered(1)
    _close(notices)
    later = window_of("seq", "u-7", AT + timedelta(days=1, minutes=1))
    notices.assign(later, _assigned("c-9", at=AT + timedelta(days=1, minutes=1)))
    notices.close(later, SENT + timedelta(days=1, minutes=1), account=ACCOUNT, line="line-1")
    assert (notices.told(window_of("seq", "u-7", AT)), notices.told(later)) == (0, 1)


def test_a_told_window_is_remembered_through_the_day_after_later_windows_are_told() -> None:
    # given the 14:30 window told, then the 14:40 window told
    notices = _gathered(21)
    _close(notices)
    ten_later = AT + timedelta(minutes=10)
    notices.assign(window_of("seq", "u-7", ten_later), _assigned("c-9", at=ten_later))
    notices.close(window_of("seq", "u-7", ten_later), SENT, account=ACCOUNT, line="line-1")
    # when a late input opens 14:30 again and it is told
    window = window_of("seq", "u-7", AT)
    for n in range(21):
        notices.assign(window, _assigned(f"c-{n}", f"seq~c-{n}~2"))
    [summary] = _close(notices)
    # then it is its second telling, under an effect id of its own
    assert notices.told(window) == 2
    assert summary["effect_id"] == "fx:seq:owner:u-7:2027-07-02T14:30:00Z:summary:2"


def test_an_owner_with_no_phone_but_an_email_is_told_by_email() -> None:
    account = build_account({"users": {"u-9": {"name": "Kim", "email": "kim@example.com"}}})
    notices = OwnerNotices()
    window = window_of("seq", "u-9", AT)
    notices.assign(window, _assigned("c-1", "seq~c-1~1"))
    [notice] = notices.close(window, SENT, account=account, line=None)
    assert notice.type == "notify.email"
    assert notice.payload["ring_group_emails"] == ["kim@example.com"]
    assert notice.payload["subject"] == "New contact assigned"
    assert notice.payload["to"] == "u-9"


def test_a_minute_is_told_in_time_order_with_the_contacts_as_they_were_assigned() -> None:
    # given assignments recorded out of order (a lagging partition), one of a contact
    # who has since been renamed
    notices = OwnerNotices()
    window = window_of("seq", "u-7", AT)
    later = datetime(2027, 7, 2, 14, 30, 40, tzinfo=UTC)
    notices.assign(window, _assigned("c-1", at=later))
    renamed = ContactState(contact_id="c-2", first_name="Old Name")
    notices.assign(
        window, Assignment("c-2", "", "owner", "fx:seq:c-2:1:owner:1", AT, describe(renamed))
    )
    # when the minute is told
    bodies = [p["body"] for p in _close(notices)]
    # then in the order they were assigned (not by id), naming the contact as it was then
    assert bodies == [
        "You have been assigned a new contact: Old Name.",
        "You have been assigned a new contact: c-1.",
    ]
