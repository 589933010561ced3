"""A broker that is down makes its client log every failed connection: the services let
one a period through per logger and message, and say how many they held back."""

from __future__ import annotations

import logging

from streams.outages import RepeatLimit


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(name: str, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)


def test_a_repeated_client_message_goes_once_a_period_and_then_counts_the_rest() -> None:
    clock = Clock()
    limit = RepeatLimit(period=10.0, clock=clock)
    # given 90 failed connections logged within a second
    let_through = [
        limit.filter(record("aiokafka.conn", "Unable connect to node %s", n)) for n in range(90)
    ]
    # then one goes through
    assert let_through.count(True) == 1
    # and once the period is over, the next one says how many were held back
    clock.now = 10.5
    later = record("aiokafka.conn", "Unable connect to node %s", 1)
    assert limit.filter(later)
    assert later.getMessage() == "Unable connect to node 1 (and 89 more like it in the last 10 s)"


def test_other_messages_and_other_loggers_are_not_held_back() -> None:
    limit = RepeatLimit(period=10.0, clock=Clock())
    assert limit.filter(record("aiokafka.conn", "Unable connect to node %s", 1))
    assert limit.filter(record("aiokafka.consumer", "Heartbeat failed"))
    for _ in range(5):
        assert limit.filter(record("dripstream.worker", "lost Kafka"))
