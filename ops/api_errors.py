"""The HTTP API's refusals and JSON answers (ops/http_api.py)."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web


class ApiError(Exception):
    """A refusal: the status, a message, the field at fault and anything else to report."""

    def __init__(self, status: int, error: str, field: str | None, **extra: Any) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.field = field
        self.extra = extra

    def response(self) -> web.Response:
        answer = json_response(
            {"error": self.error, "field": self.field, **self.extra}, self.status
        )
        if self.status == 401:
            answer.headers["WWW-Authenticate"] = 'Bearer realm="dripstream"'
        return answer


def json_response(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(value), status=status, content_type="application/json")
