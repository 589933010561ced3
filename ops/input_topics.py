"""Before `produce` (and every command that publishes to the input topics) sends a record:
the prefix's input topics are there, co-partitioned, or about to be made all alike.

Without this check a broker whose auto-create is off left the producer waiting for the
topics' metadata for the whole outage wait (5 minutes) before it said anything, and one
whose auto-create is on made only the topics the file happened to touch, at the broker's
default count, beside input topics made by hand with another: a worker then refuses them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ops import topics_cli
from ops.topics_cli import missing_inputs, not_copartitioned
from schemas.registry import INPUT_TOPICS

# Long enough for a broker that makes topics on first use to make and report all six.
CREATION_WAIT_S = 15.0
# How long some input topics may be missing beside others before that is taken as so.
SETTLE_S = 3.0
SETTLE_POLL_S = 0.25


class InputTopicsNotReadyError(Exception):
    """The input topics cannot take records as they are; the message says what to do."""


async def ensure_input_topics(
    producer: Any, prefix: str, wait_s: float = CREATION_WAIT_S, settle_s: float = SETTLE_S
) -> None:
    """Return once every input topic of `prefix` is known to the broker, else raise
    InputTopicsNotReadyError. `producer` is a started AIOKafkaProducer.

    Topics that exist are read from the whole cluster's metadata, which makes none. When
    some exist and others do not for `settle_s` seconds, or their partition counts differ,
    nothing is made. When none exists, all are asked for, so that a broker that makes
    topics on first use makes every one of them, with one count; one that does not is
    waited for `wait_s` seconds."""
    names = [prefix + name for name in INPUT_TOPICS]
    counts, problem = await _settled(lambda: _counts(producer, names), prefix, settle_s)
    if problem is not None:
        raise InputTopicsNotReadyError(problem)
    if counts:
        return
    asked = asyncio.gather(*(producer.partitions_for(name) for name in names))
    try:
        await asyncio.wait_for(asked, wait_s)
        return
    except TimeoutError:
        missing = [name for name in names if name not in await _counts(producer, names)]
    if missing:
        raise InputTopicsNotReadyError(
            f"the input topics do not exist and the broker did not make them within"
            f" {wait_s:g} s ({', '.join(missing)}; is its auto.create.topics.enable off?):"
            f" make them first ({topics_cli.create_command(prefix)})"
        )


async def input_topics_problem(
    bootstrap: str, prefix: str, settle_s: float = SETTLE_S
) -> str | None:
    """What is wrong with the prefix's input topics (some missing beside others, or counts
    that differ) for `settle_s` seconds on end, else None: a worker's check at its start,
    through the admin client, which makes no topic."""
    _, problem = await _settled(
        lambda: topics_cli.input_partition_counts(bootstrap, prefix), prefix, settle_s
    )
    return problem


async def _settled(
    read_counts: Callable[[], Awaitable[dict[str, int]]], prefix: str, settle_s: float
) -> tuple[dict[str, int], str | None]:
    """The input topics' partition counts and what is wrong with them, read again while
    something is, for `settle_s` seconds: another client may be making them this moment (a
    worker's first subscription, a `produce`, asks for all six), and a topic just made
    shows no partitions until its leader is elected."""
    settled = time.monotonic() + settle_s
    while True:
        counts = await read_counts()
        problem = not_copartitioned(counts) or missing_inputs(counts, prefix)
        if problem is None or time.monotonic() >= settled:
            return counts, problem
        await asyncio.sleep(SETTLE_POLL_S)


async def _counts(producer: Any, names: list[str]) -> dict[str, int]:
    """The partition count of each of `names` the broker reports, from the whole cluster's
    metadata (asking for it by name would have a broker that makes topics make it)."""
    cluster = await producer.client.fetch_all_metadata()
    return {
        name: len(found)
        for name in names
        if (found := cluster.partitions_for_topic(name)) is not None
    }
