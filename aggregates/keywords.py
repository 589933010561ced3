"""Opt-out and opt-in keywords in inbound SMS (CONTRACT.md §1.2).

Only a body that is *exactly* a keyword counts, once trimmed and case-folded: "Stop." and
"stop please" are conversation, not keywords, so punctuation is never stripped.
"""

from __future__ import annotations

from typing import Final, Literal

KeywordIntent = Literal["opt_out", "opt_in"]

_INTENTS: Final[dict[str, KeywordIntent]] = {
    **dict.fromkeys(
        ("stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke", "optout"),
        "opt_out",
    ),
    **dict.fromkeys(("start", "unstop", "yes"), "opt_in"),
}


def keyword_intent(body: str | None) -> KeywordIntent | None:
    """What an inbound SMS body asks for when it is a keyword; None for anything else."""
    if body is None:
        return None
    return _INTENTS.get(body.strip().casefold())
