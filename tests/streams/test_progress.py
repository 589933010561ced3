"""The progress line a running service logs: what grew since the last line, at most every
`every` seconds, and nothing when nothing grew."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from streams.progress import ProgressLog, registry_totals


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_line_says_what_grew_once_the_interval_has_passed() -> None:
    totals = [0.0, 0.0]
    clock = Clock()
    progress = ProgressLog(lambda: totals, ("in", "out"), every=30, clock=clock)
    totals[:] = [1234, 5]
    clock.now += 29
    assert progress.line() is None  # not yet
    clock.now += 2
    assert progress.line() == "1,234 in, 5 out in the last 31 s"
    clock.now += 30
    assert progress.line() is None  # nothing grew: nothing to say
    totals[1] = 7
    clock.now += 30
    assert progress.line() == "0 in, 2 out in the last 30 s"


def test_registry_totals_sum_a_labelled_counter_over_its_labels() -> None:
    registry = CollectorRegistry()
    published = Counter("published", "by type", ["type"], registry=registry)
    letters = Counter("letters", "dead letters", registry=registry)
    published.labels(type="effect.sent").inc(3)
    published.labels(type="effect.failed").inc(2)
    letters.inc()
    assert registry_totals(registry, ("published_total", "letters_total"))() == [5.0, 1.0]
