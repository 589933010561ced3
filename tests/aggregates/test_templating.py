"""Shortcodes and the opt-out phrase (CONTRACT.md §2)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregates.templating import SHORTCODES, render, unknown_shortcodes, with_opt_out

WELCOME = "Hi [FirstName], this is [AgentName]. Thanks for your interest!"
OPT_OUT = "Reply STOP to opt out."
CONTACT = {
    "FirstName": "Maya",
    "LastName": "Lopez",
    "Phone": "+17205550142",
    "Email": "maya@example.com",
    "State": "CO",
    "TrackingNumber": "+12125550000",
    "AgentName": "Sam Lee",
}


def sms(text: str, values: dict[str, str | None], phrase: str | None = OPT_OUT) -> str:
    """When the engine renders a step's text for a contact and adds the opt-out phrase."""
    return with_opt_out(render(text, values), phrase)


def test_the_shortcodes_are_the_contracts_seven() -> None:
    assert {
        "FirstName",
        "LastName",
        "Phone",
        "Email",
        "State",
        "TrackingNumber",
        "AgentName",
    } == SHORTCODES


@pytest.mark.parametrize("name", sorted(SHORTCODES))
def test_each_shortcode_is_replaced_by_its_value(name: str) -> None:
    # given a text using one shortcode and a contact with every value
    text = f"<[{name}]>"
    # when / then
    assert render(text, CONTACT) == f"<{CONTACT[name]}>"


def test_the_welcome_sms_reads_as_the_scenario_says() -> None:
    assert sms(WELCOME, {"FirstName": "Maya", "AgentName": "Sam Lee"}) == (
        "Hi Maya, this is Sam Lee. Thanks for your interest! Reply STOP to opt out."
    )


def test_a_missing_agent_leaves_no_space_before_the_period() -> None:
    assert sms(WELCOME, {"FirstName": "Maya"}) == (
        "Hi Maya, this is. Thanks for your interest! Reply STOP to opt out."
    )


@pytest.mark.parametrize(
    ("text", "values", "expected"),
    [
        ("Hi [FirstName] [LastName], welcome", {"LastName": "Lee"}, "Hi Lee, welcome"),
        ("Hi [FirstName] [LastName], welcome", {}, "Hi, welcome"),
        ("Hi [FirstName]!", {"FirstName": None}, "Hi!"),
        ("Hi [FirstName]?", {"FirstName": "   "}, "Hi?"),
        ("[FirstName] thanks", {}, "thanks"),
        ("Thanks [FirstName]", {}, "Thanks"),
        ("Dear [FirstName],\nSee you", {}, "Dear,\nSee you"),
        ("Hello [FirstName]\nBye", {}, "Hello\nBye"),
        ("Line one\n[FirstName] line two", {}, "Line one\nline two"),
        ("From [State] ; ok", {}, "From; ok"),
        ("Call [Phone] or write [Email].", {"Email": "a@b.co"}, "Call or write a@b.co."),
        ("Hi  [FirstName]", {"FirstName": "Maya"}, "Hi  Maya"),
        ("Thanks,\n[AgentName]", {}, "Thanks,"),
        ("Thanks,\n[AgentName]\n", {}, "Thanks,\n"),
        ("Thanks,\r\n[AgentName] [Phone]\r\nBye", {}, "Thanks,\r\nBye"),
        ("Thanks,\n[AgentName]\n[Phone]", {"Phone": "+12125550000"}, "Thanks,\n+12125550000"),
        ("Top\n\n[FirstName]\n\nEnd", {}, "Top\n\n\nEnd"),
    ],
    ids=[
        "first-missing",
        "both-missing",
        "none-value",
        "blank-value",
        "at-start",
        "at-end",
        "before-newline-after-comma",
        "before-newline",
        "after-newline",
        "before-semicolon",
        "middle",
        "author-spacing-kept",
        "last-line-all-holes-goes-with-its-break",
        "line-of-holes-goes-trailing-break-stays",
        "crlf-line-of-holes",
        "only-the-line-of-holes-goes",
        "author-blank-lines-kept",
    ],
)
def test_missing_values_leave_tidy_whitespace(
    text: str, values: dict[str, str | None], expected: str
) -> None:
    assert render(text, values) == expected


def test_values_are_inserted_once_without_being_read_as_shortcodes() -> None:
    # given a value that itself looks like a shortcode
    values = {"FirstName": "[LastName]", "LastName": "Lee"}
    # then it is inserted literally, not expanded again
    assert render("[FirstName] [LastName]", values) == "[LastName] Lee"


def test_values_are_stripped() -> None:
    assert render("Hi [FirstName]!", {"FirstName": "  Maya \n"}) == "Hi Maya!"


def test_unknown_and_non_shortcode_brackets_are_left_as_written() -> None:
    text = "See [1] and [ ] and [a b] and [Frist] for [FirstName]"
    assert render(text, CONTACT) == "See [1] and [ ] and [a b] and [Frist] for Maya"


def test_unknown_shortcodes_are_listed_in_order_once() -> None:
    # given a text with typos, a repeated typo, and bracketed text that is no shortcode
    text = "Hi [Frist] [LastName] [firstname] [1] [ ] [a b] [First_Name] [Frist] [AgentNme]"
    # when / then: only letters-only tokens count, and they are case-sensitive
    assert unknown_shortcodes(text) == ["Frist", "firstname", "AgentNme"]


def test_a_text_of_known_shortcodes_has_no_unknown_ones() -> None:
    assert unknown_shortcodes(" ".join(f"[{name}]" for name in SHORTCODES)) == []
    assert unknown_shortcodes("") == []


@pytest.mark.parametrize(
    ("body", "phrase", "expected"),
    [
        ("Hi Maya!", OPT_OUT, "Hi Maya! Reply STOP to opt out."),
        ("Hi Maya!  \n", OPT_OUT, "Hi Maya! Reply STOP to opt out."),
        ("Hi Maya! Reply STOP to opt out.", OPT_OUT, "Hi Maya! Reply STOP to opt out."),
        ("Hi Maya! Reply STOP to opt out. ", OPT_OUT, "Hi Maya! Reply STOP to opt out."),
        ("Hi Maya! Reply STOP to opt out.\n", OPT_OUT, "Hi Maya! Reply STOP to opt out."),
        ("Hi Maya! reply stop to opt out.", OPT_OUT, "Hi Maya! reply stop to opt out. " + OPT_OUT),
        ("Reply STOP to opt out. Hi Maya!", OPT_OUT, "Reply STOP to opt out. Hi Maya! " + OPT_OUT),
        ("", OPT_OUT, OPT_OUT),
        ("Hi Maya!", "  Text STOP to quit  ", "Hi Maya! Text STOP to quit"),
        ("Hi Maya!", None, "Hi Maya!"),
        ("Hi Maya!", "", "Hi Maya!"),
        ("Hi Maya!", "   ", "Hi Maya!"),
    ],
    ids=[
        "appended",
        "trailing-whitespace-stripped",
        "already-there",
        "already-there-then-blank",
        "already-there-then-a-block-scalars-newline",
        "other-case-is-not-the-phrase",
        "only-at-the-end-counts",
        "empty-body",
        "phrase-stripped",
        "no-phrase",
        "empty-phrase",
        "blank-phrase",
    ],
)
def test_the_opt_out_phrase_ends_every_sms_once(
    body: str, phrase: str | None, expected: str
) -> None:
    assert with_opt_out(body, phrase) == expected


# --- properties -------------------------------------------------------------------------

_TOKEN = re.compile(r"\[([A-Za-z]+)\]")
# Literal text never holds "]", so a "]" in the output can only close a token the template
# itself wrote; values hold no brackets.
literals = st.text(alphabet=st.characters(blacklist_characters="]"), max_size=8)
tokens = st.sampled_from(sorted(SHORTCODES)) | st.from_regex(r"[A-Za-z]{1,6}", fullmatch=True)
templates = st.lists(st.tuples(literals, tokens.map(lambda name: f"[{name}]")), max_size=6).map(
    lambda pairs: "".join(literal + token for literal, token in pairs)
)
values = st.dictionaries(
    st.sampled_from(sorted(SHORTCODES)),
    st.none() | st.text(alphabet=st.characters(blacklist_characters="[]"), max_size=8),
)


@given(templates, values)
def test_render_never_leaves_a_known_shortcode(text: str, vals: dict[str, str | None]) -> None:
    assert not set(_TOKEN.findall(render(text, vals))) & SHORTCODES


words = st.from_regex(r"[a-z]{1,6}[,.!?]?", fullmatch=True)
spaced = st.lists(
    words | st.sampled_from(sorted(f"[{name}]" for name in SHORTCODES)), min_size=1, max_size=8
).map(" ".join)


single_words = st.dictionaries(
    st.sampled_from(sorted(SHORTCODES)), st.none() | st.from_regex(r"[A-Za-z]{0,6}", fullmatch=True)
)


@given(spaced, single_words)
def test_render_of_single_spaced_text_leaves_no_hole(
    text: str, vals: dict[str, str | None]
) -> None:
    # given a text whose words and shortcodes are one space apart, and one-word values
    # when it is rendered
    out = render(text, vals)
    # then no hole shows: no double space, no space before punctuation, none at the ends
    assert "  " not in out
    assert not re.search(r" [,.!?]", out)
    assert out == out.strip(" ")


@given(st.text(max_size=30), st.text(max_size=20) | st.none())
def test_with_opt_out_is_idempotent(body: str, phrase: str | None) -> None:
    once = with_opt_out(body, phrase)
    assert with_opt_out(once, phrase) == once
    if phrase and phrase.strip():
        # CONTRACT.md §2: every automated SMS/MMS ends with the phrase, exactly
        assert once.endswith(phrase.strip())


full_values = st.fixed_dictionaries(
    {name: st.from_regex(r"[^\[\]\s]([^\[\]]*[^\[\]\s])?", fullmatch=True) for name in SHORTCODES}
)


@given(templates, full_values)
def test_with_every_value_render_is_plain_substitution(text: str, vals: dict[str, str]) -> None:
    expected = _TOKEN.sub(lambda m: vals.get(m[1], m[0]), text)
    assert render(text, vals) == expected
