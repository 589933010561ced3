"""The effects worker's metrics, served as Prometheus text at `/metrics` on the callback
server: what it published, by type (effect.sent / failed / unknown, status changes, the
contact changes it feeds back; an outcome published again, as recovery does after a
restart for the commands it finds settled, counts again), what it dead-lettered, and the
sends tried again after a refusal for now."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector


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

    def count_retries(self, read: Callable[[], int]) -> None:
        """`dripstream_effects_retries_total`, read from the processor at each scrape."""
        self.registry.register(_Retries(read))

    async def serve(self, _request: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(self.registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response


class _Retries(Collector):
    def __init__(self, read: Callable[[], int]) -> None:
        self._read = read

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "dripstream_effects_retries",
            "Sends tried again after a refusal for now (429, 503, a connection never made)",
            value=self._read(),
        )
