"""A definition in words: given a step's delay or a trigger, then what `sequences show` says."""

from __future__ import annotations

from typing import Any

import pytest

from projections.definition_words import delay_words, trigger_action, trigger_values, value_text


@pytest.mark.parametrize(
    ("delay", "after", "words"),
    [
        ({"kind": "none"}, None, "at once after enrollment"),
        (None, "s1", "at once after step s1"),
        ({"kind": "default", "amount": 1, "unit": "hours"}, None, "1 hour after enrollment"),
        ({"kind": "default", "amount": 90, "unit": "minutes"}, "s1", "90 minutes after step s1"),
        ({"kind": "default", "amount": 3, "unit": "days"}, "s2", "3 days after step s2"),
        (
            {"kind": "time_of_day", "days": 1, "at": "09:15"},
            "mail",
            "at 09:15 the contact's time, 1 day after step mail",
        ),
        (
            {"kind": "time_of_day", "days": 0, "at": "18:00"},
            None,
            "at 18:00 the contact's time on the day of enrollment (the next day if 18:00 has"
            " passed)",
        ),
        # a kind this version does not know is shown as written
        ({"kind": "weekly", "on": "mon"}, None, '{"kind":"weekly","on":"mon"}'),
    ],
)
def test_a_delay_in_words_counts_from_enrollment_or_the_step_before(
    delay: Any, after: str | None, words: str
) -> None:
    assert delay_words(delay, after) == words


@pytest.mark.parametrize(
    ("trigger", "action"),
    [
        (
            {"type": "contact_disposition", "dispositions": ["won"], "action": "disenroll"},
            "disenroll",
        ),
        ({"type": "contact_tagged", "tags": ["hot"]}, "enroll"),
        ({"type": "tag_removed", "tags": ["hot"], "action": "disenroll"}, "disenroll"),
        ({"type": "call_duration", "metric": "talk_time", "seconds": 60}, "disenroll"),
        ({"type": "contact_created"}, "enroll"),
    ],
)
def test_a_trigger_without_an_action_does_what_the_engine_does(
    trigger: dict[str, Any], action: str
) -> None:
    assert trigger_action(trigger) == action


def test_a_triggers_values_are_its_keys_but_type_and_action() -> None:
    assert trigger_values({"type": "contact_tagged", "tags": ["hot", "vip"]}) == "tags: hot, vip"
    assert (
        trigger_values({"type": "call_duration", "metric": "talk_time", "seconds": 60})
        == "metric: talk_time; seconds: 60"
    )
    assert trigger_values({"type": "contact_created", "action": "enroll"}) == ""


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "-"),
        (True, "true"),
        (False, "false"),
        (30, "30"),
        ("line-1", "line-1"),
        (["u-1", "u-2"], "u-1, u-2"),
        ({"X-Key": "1"}, '{"X-Key":"1"}'),
        ([{"a": 1}], '[{"a":1}]'),
    ],
)
def test_a_value_reads_as_in_a_sequence_file(value: Any, text: str) -> None:
    assert value_text(value) == text
