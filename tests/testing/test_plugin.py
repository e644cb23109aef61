"""The pytest plugin, as a user meets it: their own test module using the `runtime` fixture,
pytest-asyncio installed but not configured (no asyncio_mode, no marks)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

USER_TESTS = '''
from actors import PROPERTY_CHANGED


async def test_health(runtime):
    @runtime.on(PROPERTY_CHANGED, subject="device:*")
    async def health(ctx):
        ctx.subject.set("health", "critical" if ctx.subject.get("cpu", 0) > 90 else "ok")

    await runtime.subject("device:1").set("cpu", 95)
    assert await runtime.subject("device:1").get("health") == "critical"


class TestInAClass:
    async def test_time_passes(self, runtime):
        await runtime.subject("a:1").set("x", 1)
        await runtime.clock.advance(60)
        assert await runtime.subject("a:1").get("x") == 1
'''


def test_async_tests_using_the_fixture_run_without_configuring_pytest_asyncio(tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # the user's rootdir, not ours
    (tmp_path / "test_user.py").write_text(USER_TESTS)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTEST_ADDOPTS", None)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_user.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
