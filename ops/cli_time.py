"""The one way the command line reads a moment (`--until`, `--now`, `--time`, …)."""

from __future__ import annotations

import argparse
from datetime import datetime

from schemas.envelope import TimeOutOfRange, parse_event_time


def moment(text: str) -> datetime:
    """An RFC 3339 time within the range the engine takes event times in (its timers and
    calendar must stay computable), for argparse's `type=`: a bad one is a usage error."""
    try:
        return parse_event_time(text)
    except TimeOutOfRange as error:
        raise argparse.ArgumentTypeError(f"{text!r} {error}") from None
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time: {text!r}") from None
