"""Send pacing per line: a token bucket per from-number (carriers cap a long code's rate)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from effects.ports import Sleep


class LineRateLimiter:
    """`rate` sends per second per key, bursts of up to `burst`.

    Each caller reserves the next free slot and sleeps until it: concurrent callers on one
    line queue up in arrival order, and one sleep per send is enough.
    """

    def __init__(
        self, rate: float, burst: int, *, monotonic: Callable[[], float], sleep: Sleep
    ) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("rate and burst must be positive")
        self._rate = rate
        self._burst = float(burst)
        self._monotonic = monotonic
        self._sleep = sleep
        self._tokens: dict[str, float] = {}
        self._updated: dict[str, float] = {}

    def reserve(self, key: str) -> float:
        """Take one token for `key`; return how long to wait before using it."""
        tokens = self._refill(key) - 1.0
        self._tokens[key] = tokens
        return 0.0 if tokens >= 0 else -tokens / self._rate

    def try_take(self, key: str) -> bool:
        """Take one token for `key` only if one is free now (nobody queued, no wait)."""
        tokens = self._refill(key)
        if tokens < 1.0:
            return False
        self._tokens[key] = tokens - 1.0
        return True

    def give_back(self, key: str) -> None:
        """Return a token taken for a send that did not happen (a duplicate command).

        Only while nobody is queued: a waiter's sleep was computed without this token, and
        handing it to a later caller could put two sends in one slot. Then it is lost,
        which only ever slows the line."""
        tokens = self._refill(key)
        if tokens >= 0:
            self._tokens[key] = min(self._burst, tokens + 1.0)

    def _refill(self, key: str) -> float:
        now = self._monotonic()
        tokens = self._tokens.get(key, self._burst)
        elapsed = now - self._updated.get(key, now)
        tokens = min(self._burst, tokens + elapsed * self._rate)
        self._tokens[key] = tokens
        self._updated[key] = now
        return tokens

    async def acquire(self, key: str, *, unless: asyncio.Event | None = None) -> bool:
        """Wait for the key's next slot: True when it came, False when `unless` was set
        first (a stop: the send is left for the next processor, and its slot is lost,
        which only ever slows the line)."""
        wait = self.reserve(key)
        if wait <= 0:
            return True
        if unless is None:
            await self._sleep(wait)
            return True
        if unless.is_set():
            return False
        turn = asyncio.ensure_future(self._sleep(wait))
        stop = asyncio.ensure_future(unless.wait())
        try:
            done, _ = await asyncio.wait({turn, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:  # cancelled too: neither waiter outlives this call
            for waiter in (turn, stop):
                waiter.cancel()
        return turn in done
