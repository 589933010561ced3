"""Opt-out / opt-in keywords in inbound SMS (CONTRACT.md §1.2)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregates.keywords import keyword_intent

OPT_OUT = ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT")
OPT_IN = ("START", "UNSTOP", "YES")


@pytest.mark.parametrize("body", OPT_OUT)
def test_each_opt_out_keyword_opts_out(body: str) -> None:
    assert keyword_intent(body) == "opt_out"


@pytest.mark.parametrize("body", OPT_IN)
def test_each_opt_in_keyword_opts_in(body: str) -> None:
    assert keyword_intent(body) == "opt_in"


@pytest.mark.parametrize(
    ("body", "intent"),
    [
        ("stop", "opt_out"),
        ("Stop", "opt_out"),
        ("  STOP  ", "opt_out"),
        ("\tstop\r\n", "opt_out"),
        ("\u00a0Unsubscribe\u00a0", "opt_out"),
        ("OptOut", "opt_out"),
        ("\u017ftop", "opt_out"),  # long s: case-folded, not just lower-cased
        ("yes", "opt_in"),
        (" Start\n", "opt_in"),
        ("unStop", "opt_in"),
    ],
)
def test_case_and_surrounding_whitespace_do_not_matter(body: str, intent: str) -> None:
    assert keyword_intent(body) == intent


@pytest.mark.parametrize(
    "body",
    [
        None,
        "",
        "   ",
        "Stop.",
        "STOP!",
        "stop please",
        "please stop",
        "STOP ALL",
        "opt out",
        "opt-out",
        "yes!",
        "yess",
        "stopp",
        "Don't stop",
        "ok",
        "s t o p",
        "STOP\nSTOP",
        # the carriers' other reserved words ask for help, not to leave
        "HELP",
        "INFO",
        "STOP2",
    ],
)
def test_anything_but_a_whole_keyword_is_conversation(body: str | None) -> None:
    assert keyword_intent(body) is None


blanks = st.text(alphabet=" \t\r\n\u00a0\u2003", max_size=4)
bodies = st.sampled_from(OPT_OUT + OPT_IN) | st.text(
    alphabet=st.characters(codec="ascii"), max_size=12
)


@given(bodies, blanks, blanks, st.sampled_from([str.upper, str.lower, str.swapcase, str.title]))
def test_intent_is_invariant_under_whitespace_and_case(
    body: str, before: str, after: str, recase: Callable[[str], str]
) -> None:
    assert keyword_intent(before + recase(body) + after) == keyword_intent(body)
