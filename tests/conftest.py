"""Shared fixtures: a fresh runtime per test on the in-memory store."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from runtime import Runtime


@pytest.fixture
async def rt() -> AsyncIterator[Runtime]:
    runtime = Runtime(passivate_after=None)
    async with runtime:
        yield runtime
