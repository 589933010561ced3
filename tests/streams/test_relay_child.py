"""The worker's watch over its relay process (streams/relay_child.py): what it published
and dead-lettered is counted once, and a relay that died takes the worker down unless the
worker is stopping."""

from __future__ import annotations

import multiprocessing
import sys

import pytest
from prometheus_client import CollectorRegistry, Counter

from streams.relay import RelaySettings
from streams.relay_child import RelayChild

SETTINGS = RelaySettings("127.0.0.1:1", "postgresql://nowhere/none", "p.", "public")


def _child() -> tuple[RelayChild, CollectorRegistry]:
    registry = CollectorRegistry()
    published = Counter("published", "Published", registry=registry)
    dead_letters = Counter("dead_letters", "Dead-lettered", registry=registry)
    return RelayChild(SETTINGS, published, dead_letters), registry


def _ended_process(child: RelayChild, exit_code: int) -> None:
    process = multiprocessing.get_context("spawn").Process(target=sys.exit, args=(exit_code,))
    process.start()
    process.join()
    child.process = process  # type: ignore[assignment]


def test_what_the_relay_published_and_dead_lettered_is_counted_once() -> None:
    child, registry = _child()
    _ended_process(child, 0)
    child.published.value.value = 5
    child.dead_letters.value.value = 1

    child.check(stopping=True)
    child.check(stopping=True)
    child.published.value.value = 7

    child.check(stopping=True)

    assert registry.get_sample_value("published_total") == 7
    assert registry.get_sample_value("dead_letters_total") == 1


def test_a_relay_that_died_stops_the_worker_loudly() -> None:
    child, _ = _child()
    _ended_process(child, 3)

    with pytest.raises(RuntimeError, match=r"the outbox relay stopped \(exit code 3\)"):
        child.check()


def test_a_worker_without_a_relay_has_nothing_to_watch() -> None:
    child, registry = _child()

    child.check()

    assert registry.get_sample_value("published_total") == 0
