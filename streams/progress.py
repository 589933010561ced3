"""A log line now and then of what a service did meanwhile: a worker deciding a backlog, an
effects processor pacing texts at one a second per line, a projector catching up, would
otherwise say nothing from their start until they stop."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry

EVERY = 30.0  # seconds between two lines, at the most often


class ProgressLog:
    """`line()` says how much each of some running totals grew since the last line, once
    `every` seconds have passed and one of them grew; otherwise None."""

    def __init__(
        self,
        totals: Callable[[], Sequence[float]],
        words: Sequence[str],
        *,
        every: float = EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._totals, self._words = totals, words
        self._every, self._clock = every, clock
        self._at = clock()
        self._last = list(totals())

    def line(self) -> str | None:
        now = self._clock()
        elapsed = now - self._at
        if elapsed < self._every:
            return None
        totals = list(self._totals())
        grown = [total - last for total, last in zip(totals, self._last, strict=True)]
        self._at, self._last = now, totals
        if not any(grown):
            return None
        said = ", ".join(f"{n:,.0f} {words}" for n, words in zip(grown, self._words, strict=True))
        return f"{said} in the last {elapsed:.0f} s"


def registry_totals(registry: CollectorRegistry, names: Sequence[str]) -> Callable[[], list[float]]:
    """The sums of the samples of each name (a labelled counter's over its labels)."""

    def read() -> list[float]:
        found = dict.fromkeys(names, 0.0)
        for metric in registry.collect():
            for sample in metric.samples:
                if sample.name in found:
                    found[sample.name] += sample.value
        return [found[name] for name in names]

    return read
