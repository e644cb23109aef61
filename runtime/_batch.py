"""Batches: one caller, many messages, one future.

A caller that sends one message awaits one future, and waking it is most of what a durable
write costs the runtime. A batch gives each of its messages a slot instead, which records the
outcome of that message's turn (or of its durable acknowledgement) and resolves the batch's
one future when the last slot is settled.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ._errors import BatchFailed


class Batch:
    """The outcomes of a batch's messages, by subject name."""

    __slots__ = ("errors", "future", "remaining", "results")

    def __init__(self, future: asyncio.Future[None], size: int) -> None:
        self.future = future
        self.remaining = size  # counted from the start: the first may settle before the last
        self.results: dict[str, Any] = {}
        self.errors: dict[str, BaseException] = {}

    def _settled(self) -> None:
        self.remaining -= 1
        if not self.remaining and not self.future.done():
            self.future.set_result(None)

    async def outcome(self) -> dict[str, Any]:
        """Every result once every slot is settled; `BatchFailed` if any failed."""
        if self.remaining:
            await self.future
        if self.errors:
            raise BatchFailed(self.results, self.errors)
        return self.results


class Slot:
    """Stands in for the future of one message of a batch (see `Reply`); one per subject."""

    __slots__ = ("_batch", "_done", "_error", "name")

    def __init__(self, batch: Batch, name: str) -> None:
        self._batch = batch
        self.name = name
        self._done = False
        self._error: BaseException | None = None

    def __repr__(self) -> str:
        return f"<Slot {self.name!r} {'done' if self._done else 'pending'}>"

    def done(self) -> bool:
        return self._done

    def cancelled(self) -> bool:
        return isinstance(self._error, asyncio.CancelledError)

    def exception(self) -> BaseException | None:
        return self._error

    def set_result(self, result: Any, /) -> None:
        if self._done:
            raise asyncio.InvalidStateError(f"{self!r} is settled already")
        self._done = True
        self._batch.results[self.name] = result
        self._batch._settled()

    def set_exception(self, exception: BaseException, /) -> None:
        if self._done:
            raise asyncio.InvalidStateError(f"{self!r} is settled already")
        self._done = True
        self._error = exception
        self._batch.errors[self.name] = exception
        self._batch._settled()

    def cancel(self) -> bool:
        if self._done:
            return False
        self.set_exception(asyncio.CancelledError())
        return True

