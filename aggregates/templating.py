"""Shortcodes in message texts (``[FirstName]`` …) and the account's opt-out phrase.

A shortcode is a bracketed run of ASCII letters, spelled exactly as in CONTRACT.md §2.
Anything else in brackets ("[1]", "[ ]", "[a b]") is plain text: it is neither replaced nor
reported. A letters-only token with an unknown name ("[Frist]", "[firstname]") is left as
written by ``render`` and reported by ``unknown_shortcodes``, and so is a shortcode
written another way ("[First Name]", "[first_name]", "{FirstName}") by
``misspelled_shortcodes``: the sequence that uses one loads as invalid instead of sending
the typo to a contact.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Final

SHORTCODES: Final[frozenset[str]] = frozenset(
    {"FirstName", "LastName", "Phone", "Email", "State", "TrackingNumber", "AgentName"}
)

_TOKEN: Final = re.compile(r"\[([A-Za-z]+)\]")
# Blanks that a missing value may leave doubled; newlines are the author's layout.
_BLANKS: Final = " \t"
# What a line may hold besides its text: a line of only these is blank.
_LINE_BLANKS: Final = " \t\r"
# Punctuation that never follows a space once a missing value is taken out.
_CLOSERS: Final = ",.!?;:"


def unknown_shortcodes(text: str) -> list[str]:
    """Names (without brackets) of the letters-only tokens that are not shortcodes.

    In order of first appearance, each once: ``"[Foo] [Bar] [Foo]"`` gives ``["Foo", "Bar"]``.
    """
    found = (name for name in _TOKEN.findall(text) if name not in SHORTCODES)
    return list(dict.fromkeys(found))


# A shortcode's name in other brackets, cased, spaced or joined otherwise.
_NEAR: Final = re.compile(r"[\[{]\s*([A-Za-z][A-Za-z _-]*?)\s*[\]}]")
_FOLDED: Final = {name.casefold(): name for name in SHORTCODES}


def misspelled_shortcodes(text: str) -> list[tuple[str, str]]:
    """(as written, the shortcode meant) for each token that spells a shortcode's name
    another way and is not a letters-only bracketed token (`unknown_shortcodes` names
    those). In order of first appearance, each once."""
    found: dict[str, str] = {}
    for match in _NEAR.finditer(text):
        written = match.group(0)
        meant = _FOLDED.get(re.sub(r"[ _-]", "", match.group(1)).casefold())
        if meant is not None and not _TOKEN.fullmatch(written):
            found.setdefault(written, f"[{meant}]")
    return list(found.items())


@lru_cache(maxsize=4096)
def _parse(text: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The text as a leading literal and (shortcode, following literal) pairs."""
    parts = _TOKEN.split(text)
    head = parts[0]
    pairs: list[tuple[str, str]] = []
    for i in range(1, len(parts), 2):
        name, literal = parts[i], parts[i + 1]
        if name in SHORTCODES:
            pairs.append((name, literal))
        elif pairs:
            last_name, last_literal = pairs[-1]
            pairs[-1] = (last_name, f"{last_literal}[{name}]{literal}")
        else:
            head = f"{head}[{name}]{literal}"
    return head, tuple(pairs)


def render(text: str, values: Mapping[str, str | None]) -> str:
    """``text`` with each shortcode replaced by ``values[name]`` (stripped).

    A missing, None or blank value becomes nothing, and the blanks around the hole are
    tidied: no doubled space, no space before ``, . ! ? ; :``, none left at a line's end or
    start. The text elsewhere is left exactly as the author wrote it.
    """
    head, pairs = _parse(text)
    out = [head]
    get = values.get
    for i, (name, literal) in enumerate(pairs):
        value = get(name)
        if not value or not (value := value.strip()):
            if "\n" in text:
                return _render_lines(text, values)
            return _render_from_hole(out, literal, pairs[i + 1 :], values)
        out += (value, literal)
    return "".join(out)


def _render_lines(text: str, values: Mapping[str, str | None]) -> str:
    """``render`` line by line, once a value is missing from a text of several lines.

    A line that held nothing but shortcodes without values goes with its line break, so a
    signature line "[AgentName]" leaves no empty line (nor a trailing break) behind.
    """
    kept: list[str] = []
    for line in text.split("\n"):
        rendered = render(line, values)
        # Text is never taken out, so a line that rendered blank but was not is all holes.
        if rendered.strip(_LINE_BLANKS) or not line.strip(_LINE_BLANKS):
            kept.append(rendered)
    return "\n".join(kept)


def _render_from_hole(
    out: list[str],
    literal: str,
    rest: tuple[tuple[str, str], ...],
    values: Mapping[str, str | None],
) -> str:
    """The rest of ``render`` once a value is missing: each hole's seam is tidied."""
    hole = True
    for name, following in ((None, literal), *rest):
        if name is not None:
            value = values.get(name)
            value = value.strip() if value else ""
            if not value:
                hole = True
            elif hole:
                _close_hole(out, value)
                hole = False
            else:
                out.append(value)
        if following:
            if hole:
                _close_hole(out, following)
                hole = False
            else:
                out.append(following)
    if hole:
        _strip_tail(out)
    return "".join(out)


def _close_hole(out: list[str], following: str) -> None:
    """Append ``following`` where a value went missing, tidying the seam."""
    tail = _tail(out)
    if following[0] in _BLANKS and (not tail or tail[-1] in _BLANKS or tail[-1] == "\n"):
        following = following.lstrip(_BLANKS)
        if not following:
            return
    if following[0] in _CLOSERS or following[0] in "\r\n":
        _strip_tail(out)
    out.append(following)


def _tail(out: list[str]) -> str:
    for piece in reversed(out):
        if piece:
            return piece
    return ""


def _strip_tail(out: list[str]) -> None:
    while out:
        trimmed = out[-1].rstrip(_BLANKS)
        if trimmed or len(out) == 1:
            out[-1] = trimmed
            return
        out.pop()


def with_opt_out(body: str, phrase: str | None) -> str:
    """``body`` ending with the opt-out ``phrase``, added once after a single space.

    A body that already ends with the phrase, exactly as the account writes it (trailing
    blanks aside), is returned without those blanks, so it ends with the phrase (a YAML
    block scalar's final newline would hide it) and applying this twice changes nothing.
    A copy in other letters ("reply stop …") does not count: the compliance text is the
    account's.
    No phrase: the body as it is.
    """
    wanted = phrase.strip() if phrase else ""
    if not wanted:
        return body
    trimmed = body.rstrip()
    if trimmed.endswith(wanted):
        return trimmed
    return f"{trimmed} {wanted}" if trimmed else wanted
