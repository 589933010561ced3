"""Before `produce` (and every command that publishes to the input topics) sends a record:
the prefix's input topics are there, co-partitioned, or about to be made all alike.

Without this check a broker whose auto-create is off left the producer waiting for the
topics' metadata for the whole outage wait (5 minutes) before it said anything, and one
whose auto-create is on made only the topics the file happened to touch, at the broker's
default count, beside input topics made by hand with another: a worker then refuses them."""

from __future__ import annotations

import asyncio
from typing import Any

from ops.topics_cli import missing_inputs, not_copartitioned
from schemas.registry import INPUT_TOPICS

# Long enough for a broker that makes topics on first use to make and report all six.
CREATION_WAIT_S = 15.0


class InputTopicsNotReadyError(Exception):
    """The input topics cannot take records as they are; the message says what to do."""


async def ensure_input_topics(producer: Any, prefix: str, wait_s: float = CREATION_WAIT_S) -> None:
    """Return once every input topic of `prefix` is known to the broker, else raise
    InputTopicsNotReadyError. `producer` is a started AIOKafkaProducer.

    Topics that exist are read from the whole cluster's metadata, which makes none. When
    some exist and others do not, or their partition counts differ, nothing is made. When
    none exists, all are asked for, so that a broker that makes topics on first use makes
    every one of them, with one count; one that does not is waited for `wait_s` seconds."""
    names = [prefix + name for name in INPUT_TOPICS]
    cluster = await producer.client.fetch_all_metadata()
    counts = {
        name: len(found)
        for name in names
        if (found := cluster.partitions_for_topic(name)) is not None
    }
    problem = not_copartitioned(counts) or missing_inputs(counts, prefix)
    if problem is not None:
        raise InputTopicsNotReadyError(problem)
    if len(counts) == len(names):
        return
    asked = asyncio.gather(*(producer.partitions_for(name) for name in names))
    try:
        await asyncio.wait_for(asked, wait_s)
        return
    except TimeoutError:
        cluster = await producer.client.fetch_all_metadata()
    missing = [name for name in names if cluster.partitions_for_topic(name) is None]
    if missing:
        raise InputTopicsNotReadyError(
            f"the input topics do not exist and the broker did not make them within"
            f" {wait_s:g} s ({', '.join(missing)}; is its auto.create.topics.enable off?):"
            " make them first (`dripstream topics create`)"
        )
