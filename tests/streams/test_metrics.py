"""The worker's metrics are served in Prometheus text format."""

from __future__ import annotations

import socket
import urllib.request

from streams.metrics import WorkerMetrics


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_counters_and_gauges_are_served_over_http() -> None:
    metrics = WorkerMetrics()
    metrics.events_in.inc(3)
    metrics.dead_letters.inc()
    metrics.lag.set(7)
    metrics.repeated_inputs.set(2)
    port = _free_port()
    metrics.serve(port)

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()

    assert "dripstream_events_in_total 3.0" in text
    assert "dripstream_dead_letters_total 1.0" in text
    assert "dripstream_consumer_lag 7.0" in text
    assert "dripstream_repeated_inputs 2.0" in text
    assert "dripstream_batch_seconds_bucket" in text
