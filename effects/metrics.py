"""The effects worker's metrics, served as Prometheus text at `/metrics` on the callback
server: what it published, by type (effect.sent / failed / unknown, status changes, the
contact changes it feeds back), and what it dead-lettered."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest


class EffectsMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.published = Counter(
            "dripstream_effects_published",
            "Events published by effects: outcomes and the contact changes fed back",
            ["type"],
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "dripstream_effects_dead_letters",
            "Records of the effects topic sent to the dead-letter topic",
            registry=self.registry,
        )

    async def serve(self, _request: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(self.registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response
