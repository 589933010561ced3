"""effects/formencode.py writes exactly what urllib's urlencode writes, for any text."""

from __future__ import annotations

from urllib.parse import quote_plus, urlencode

from hypothesis import given
from hypothesis import strategies as st

from effects.formencode import form_encode, quote_value


def test_every_ascii_character_is_quoted_as_quote_plus_does() -> None:
    every = "".join(chr(code) for code in range(128))
    assert quote_value(every) == quote_plus(every)


def test_a_twilio_form_is_encoded_as_urlencode_does() -> None:
    pairs = [
        ("To", "+16465550100"),
        ("From", "+12125550000"),
        ("Body", "Hi Ann! 50% off \u2013 reply STOP to opt out. ü"),
        ("StatusCallback", "https://fx.example.com/twilio/status?effect_id=fx%3Aa%3Ac-1"),
    ]
    assert form_encode(pairs) == urlencode(pairs)


@given(st.lists(st.tuples(st.text(), st.text()), max_size=6))
def test_any_text_is_encoded_as_urlencode_does(pairs: list[tuple[str, str]]) -> None:
    assert form_encode(pairs) == urlencode(pairs)


@given(st.text(alphabet=st.characters(max_codepoint=127)))
def test_any_ascii_text_is_quoted_as_quote_plus_does(text: str) -> None:
    assert quote_value(text) == quote_plus(text)
