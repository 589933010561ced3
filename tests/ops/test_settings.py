"""Settings from the environment: a variable set but empty is not set (its default holds)."""

from __future__ import annotations

import pytest

from ops.settings import DEFAULT_BOOTSTRAP, DEFAULT_PREFIX, Settings


def test_empty_kafka_and_database_variables_fall_back_to_their_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "")
    monkeypatch.setenv("DATABASE_URL", "")
    monkeypatch.delenv("DRIPSTREAM_TOPIC_PREFIX", raising=False)

    settings = Settings.from_environment()

    assert settings.bootstrap_servers == DEFAULT_BOOTSTRAP
    assert settings.database_url is None
    assert settings.topic_prefix == DEFAULT_PREFIX


def test_an_empty_topic_prefix_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIPSTREAM_TOPIC_PREFIX", "")

    assert Settings.from_environment().topic_prefix == ""
