"""Configuration read once from the environment into frozen settings (the composition root)."""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_PREFIX = "dripstream."
PREFIX_HELP = f"topic name prefix (DRIPSTREAM_TOPIC_PREFIX, default {DEFAULT_PREFIX})"


@dataclass(frozen=True, slots=True)
class Settings:
    bootstrap_servers: str
    database_url: str | None
    topic_prefix: str

    @classmethod
    def from_environment(cls) -> Settings:
        return cls(
            # A variable set but empty (`KAFKA_BOOTSTRAP_SERVERS=`) means "not set".
            bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or DEFAULT_BOOTSTRAP,
            database_url=os.environ.get("DATABASE_URL") or None,
            # An empty prefix is a choice: topics named `contacts`, `decisions`, ...
            topic_prefix=os.environ.get("DRIPSTREAM_TOPIC_PREFIX", DEFAULT_PREFIX),
        )
