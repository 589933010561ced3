"""The relay packs record batches itself, so it must partition as Kafka's producers do."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner  # type: ignore[import-untyped]

from streams.relay import partition_for


def test_a_keyed_row_goes_where_kafkas_default_partitioner_puts_its_key() -> None:
    partitions = list(range(6))
    for n in range(500):
        key = f"c-{n}".encode()
        expected = DefaultPartitioner()(key, partitions, partitions)
        assert partition_for(key, f"e-{n}", 6) == expected


def test_a_keyless_row_always_goes_to_the_same_partition() -> None:
    # where Kafka's partitioner puts the event id as a key: the same in every process
    partitions = list(range(6))
    assert partition_for(None, "e-1", 6) == DefaultPartitioner()(b"e-1", partitions, partitions)
    assert {partition_for(None, f"e-{n}", 6) for n in range(100)} == set(range(6))
