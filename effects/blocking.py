"""The providers' synchronous SDK calls, run off the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


async def run_blocking(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`func(*args, **kwargs)` in the loop's default thread pool (sized by wiring.py)."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, lambda: func(*args, **kwargs))
