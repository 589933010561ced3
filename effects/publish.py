"""Where outcome and input events go: an injected `publish(topic, event)`, and a sink for tests."""

from __future__ import annotations

from collections.abc import Iterable

from effects.ports import Publish
from schemas.envelope import CloudEvent
from schemas.registry import topic_for


async def publish_all(publish: Publish, events: Iterable[CloudEvent]) -> None:
    """Each event to its topic (outcomes, contacts, messages, intake), in order."""
    for event in events:
        await publish(topic_for(event.type), event)


class InMemorySink:
    """A `Publish` that keeps what it was given."""

    def __init__(self) -> None:
        self.published: list[tuple[str, CloudEvent]] = []

    async def __call__(self, topic: str, event: CloudEvent) -> None:
        self.published.append((topic, event))

    def events(self, event_type: str | None = None) -> list[CloudEvent]:
        return [e for _, e in self.published if event_type is None or e.type == event_type]

    def topics(self) -> list[str]:
        return [topic for topic, _ in self.published]
