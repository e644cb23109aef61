"""Time as the runtime sees it. Everything time-based (passivation, backoff, timeouts, flush
delays) goes through one `Clock`, so that tests can substitute virtual time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


class Clock:
    """Real time, from the running event loop."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, delay: float) -> None:
        await asyncio.sleep(delay)

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Any:
        """Schedule `callback(*args)`; return an object with `cancel()`."""
        return asyncio.get_running_loop().call_later(delay, callback, *args)
