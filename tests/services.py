"""Where the test servers are, and what to do when one is missing.

Tests that need PostgreSQL or Redis use real servers, never mocks. By default they expect the
local ones; SUBJECTS_TEST_POSTGRES_URL and SUBJECTS_TEST_REDIS_URL point elsewhere. A server
that cannot be reached skips its tests with the reason, so a laptop without Redis still runs the
rest; with SUBJECTS_REQUIRE_SERVICES=1 (for CI) the same reason fails them instead, so a broken
service can never pass as a green run.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

import pytest

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
CHECK_TIMEOUT = 3.0  # seconds to wait for a server before calling it unreachable

# One check per service and test session: an unreachable server would otherwise cost a
# connection timeout in every test.
_checked: dict[str, str | None] = {}


def postgres_url() -> str:
    return os.environ.get("SUBJECTS_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL


def redis_url() -> str:
    return os.environ.get("SUBJECTS_TEST_REDIS_URL") or DEFAULT_REDIS_URL


def redact(url: str) -> str:
    """The URL without its password, fit for a test report."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def unavailable(service: str, url: str, reason: str, env_var: str) -> None:
    """Skip the current test, or fail it when SUBJECTS_REQUIRE_SERVICES=1."""
    message = f"{service} not reachable at {redact(url)}: {reason}; start it or set {env_var}"
    if os.environ.get("SUBJECTS_REQUIRE_SERVICES") == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


async def require_postgres() -> str:
    """The PostgreSQL URL to test against, once it answers a query."""
    url = postgres_url()
    if url not in _checked:
        import asyncpg  # type: ignore[import-untyped]

        try:
            con = await asyncpg.connect(url, timeout=CHECK_TIMEOUT)
            try:
                await con.fetchval("SELECT 1")
            finally:
                await con.close()
            _checked[url] = None
        except Exception as exc:
            _checked[url] = f"{type(exc).__name__}: {exc}"
    reason = _checked[url]
    if reason is not None:
        unavailable("PostgreSQL", url, reason, "SUBJECTS_TEST_POSTGRES_URL")
    return url


async def require_redis() -> str:
    """The Redis URL to test against, once it answers PING."""
    url = redis_url()
    if url not in _checked:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(
            url, socket_timeout=CHECK_TIMEOUT, socket_connect_timeout=CHECK_TIMEOUT
        )
        try:
            await client.ping()
            _checked[url] = None
        except Exception as exc:
            _checked[url] = f"{type(exc).__name__}: {exc}"
        finally:
            await client.aclose()
    reason = _checked[url]
    if reason is not None:
        unavailable("Redis", url, reason, "SUBJECTS_TEST_REDIS_URL")
    return url
