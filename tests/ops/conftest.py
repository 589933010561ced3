"""Fixtures shared by the command-line tests."""

from __future__ import annotations

import pytest

from ops import kafka_cli

Published = list[tuple[str, bytes | None, bytes]]


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> Published:
    """What the commands publish, kept instead of sent (no broker)."""
    kept: Published = []

    async def keep(
        bootstrap: str,
        prefix: str,
        records: Published,
        *,
        watermarks: bool = False,
        lines: list[int] | None = None,
    ) -> list[tuple[int, str]]:
        assert lines is None or len(lines) == len(records)
        kept.extend(records)
        return []

    monkeypatch.setattr(kafka_cli, "publish", keep)
    return kept
