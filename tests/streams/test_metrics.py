"""The worker's metrics are served in Prometheus text format."""

from __future__ import annotations

import socket
import urllib.request

from streams.metrics import PartitionProgress, WorkerMetrics, consumer_lag


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


def test_lag_counts_from_the_consumers_position_up_to_the_last_stable_offset() -> None:
    # given a partition read to its end, where the last records were a watermark and the
    # marker ending a relay transaction (consumed, never decided), one with 5 to read, one
    # whose open transaction is not readable yet, and one not fetched yet
    read_to_the_end = PartitionProgress(highwater=98, last_stable=98, position=98)
    behind = PartitionProgress(highwater=40, last_stable=40, position=35)
    open_transaction = PartitionProgress(highwater=60, last_stable=50, position=50)
    not_fetched = PartitionProgress(highwater=None, last_stable=None, position=0)
    # then only the records still to read count, plus those read and held for their turn
    assert consumer_lag([read_to_the_end]) == 0
    assert consumer_lag([read_to_the_end, behind, open_transaction, not_fetched]) == 5
    assert consumer_lag([read_to_the_end, behind], held=3) == 8


def test_lag_without_a_last_stable_offset_uses_the_highwater() -> None:
    # read_uncommitted reports -1, an old broker None
    assert consumer_lag([PartitionProgress(highwater=10, last_stable=-1, position=7)]) == 3
    assert consumer_lag([PartitionProgress(highwater=10, last_stable=None, position=10)]) == 0
    assert consumer_lag([PartitionProgress(highwater=10, last_stable=10, position=None)]) == 0
