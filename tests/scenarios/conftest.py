"""Each scenario is replayed once per session and shared by the tests that read it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.scenarios.harness import Replay, replay


@pytest.fixture(scope="session")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Replay]:
    cache: dict[str, Replay] = {}
    workdir = tmp_path_factory.mktemp("scenarios")

    def get(name: str) -> Replay:
        if name not in cache:
            cache[name] = replay(name, workdir / "first")
        return cache[name]

    return get
