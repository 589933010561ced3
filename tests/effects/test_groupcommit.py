"""Group commit: concurrent callers share a write, each gets its own result or error."""

from __future__ import annotations

import asyncio

import pytest

from effects.groupcommit import GroupCommit


async def test_callers_arriving_together_share_one_write() -> None:
    writes: list[list[int]] = []

    async def write(items: list[int]) -> list[int]:
        writes.append(items)
        await asyncio.sleep(0)
        return [item * 10 for item in items]

    group = GroupCommit(write)
    results = await asyncio.gather(*(group.submit(n) for n in range(5)))
    assert results == [0, 10, 20, 30, 40]
    assert writes == [[0, 1, 2, 3, 4]]


async def test_callers_arriving_during_a_write_go_in_the_next() -> None:
    writes: list[list[int]] = []
    gate = asyncio.Event()

    async def write(items: list[int]) -> list[int]:
        writes.append(items)
        await gate.wait()
        return items

    group = GroupCommit(write)
    first = asyncio.create_task(group.submit(1))
    await asyncio.sleep(0.01)
    later = [asyncio.create_task(group.submit(n)) for n in (2, 3)]
    await asyncio.sleep(0.01)
    gate.set()
    assert await asyncio.gather(first, *later) == [1, 2, 3]
    assert writes == [[1], [2, 3]]


async def test_a_failed_write_fails_its_callers_only() -> None:
    async def write(items: list[int]) -> list[int]:
        if 13 in items:
            raise RuntimeError("database went away")
        return items

    group = GroupCommit(write)
    with pytest.raises(RuntimeError, match="database went away"):
        await group.submit(13)
    assert await group.submit(14) == 14
