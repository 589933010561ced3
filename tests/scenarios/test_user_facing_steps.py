"""Steps that face users or systems run for DNC contacts and at night (CONTRACT.md §2, §3)."""

from __future__ import annotations

from collections.abc import Callable

import orjson
import pytest

from tests.scenarios.harness import Replay

DAY = "2027-07-06T14:00:00Z"
NIGHT = "2027-07-07T03:00:00Z"


@pytest.fixture(scope="module")
def steps(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("user_and_system_steps")


def test_the_team_email_with_shortcodes(steps: Replay) -> None:
    mail = steps.one("notify.email", contact_id="c-ok")
    data = mail["data"]
    assert (mail["time"], data["to"], data["subject"]) == (DAY, "rg-sales", "New lead Ana")
    assert data["body"].startswith("Call Ana at +12125550101.")


def test_the_webhook_carries_the_contact(steps: Replay) -> None:
    hook = steps.one("webhook.post", contact_id="c-ok")
    assert (hook["time"], hook["data"]["url"]) == (DAY, "https://hooks.example.com/lead")
    payload = orjson.dumps(hook["data"]["payload"]).decode()
    assert "c-ok" in payload
    assert "+12125550101" in payload


def test_the_power_dialer_adds_the_contact_for_the_user(steps: Replay) -> None:
    added = steps.one("power_dialer.added", contact_id="c-ok")
    assert (added["time"], added["data"]["user_id"]) == (DAY, "u-7")
    assert steps.one("enrollment.completed", contact_id="c-ok")["time"] == DAY


def test_a_dnc_contact_still_gets_routed_but_not_dialed(steps: Replay) -> None:
    assert steps.times("notify.email", contact_id="c-dnc") == [DAY]
    assert steps.times("webhook.post", contact_id="c-dnc") == [DAY]
    assert steps.times("contact.tag_added", contact_id="c-dnc") == [DAY]
    skipped = steps.one("step.skipped", contact_id="c-dnc")
    assert (skipped["data"]["step_id"], skipped["data"]["reason"]) == ("pd", "dnc")
    steps.none("power_dialer.added", contact_id="c-dnc")


@pytest.mark.parametrize(
    "kind", ["notify.email", "notify.sms", "webhook.post", "contact.tag_added"]
)
def test_user_facing_steps_are_not_held_by_quiet_hours(steps: Replay, kind: str) -> None:
    assert steps.times(kind, contact_id="c-owl") == [NIGHT]


def test_nothing_is_deferred(steps: Replay) -> None:
    assert steps.of("step.executed")  # steps ran, and none of them was moved
    steps.none("step.deferred")
