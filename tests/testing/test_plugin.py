"""The pytest plugin, as a user meets it: their own test module using the `runtime` fixture,
pytest-asyncio installed but not configured (no asyncio_mode, no marks)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

USER_TESTS = '''
import asyncio

import pytest
import uvloop

from actors import PROPERTY_CHANGED
from runtime.testing import CountingLoop


def on_uvloop():
    loop = asyncio.get_running_loop()
    assert isinstance(loop, CountingLoop)
    return isinstance(loop, uvloop.Loop)


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


async def test_the_default_loop_is_asyncios(runtime):
    assert not on_uvloop()


@pytest.mark.subjects(loop="uvloop")
async def test_the_marker_chooses_uvloop(runtime):
    assert on_uvloop()
    await runtime.clock.advance(60)


@pytest.mark.subjects(loop=("asyncio", "uvloop"))
async def test_on_each_kind_of_loop(runtime, request):
    assert on_uvloop() == request.node.name.endswith("[uvloop]")


class TestMarkersAddUp:
    pytestmark = pytest.mark.subjects(loop="uvloop", seed=1)

    @pytest.mark.subjects(seed=3)
    async def test_the_nearest_wins(self, runtime):
        assert on_uvloop() and runtime.seed == 3


@pytest.mark.subjects(loop="uvloop")
async def test_a_marked_test_without_the_fixture():
    assert on_uvloop()


@pytest.mark.asyncio(loop_scope="class")
@pytest.mark.subjects(loop="uvloop")
class TestALoopSharedByTests:
    loops = []

    async def test_one(self):
        self.loops.append(asyncio.get_running_loop())

    async def test_two(self):
        self.loops.append(asyncio.get_running_loop())
        assert self.loops[0] is self.loops[1] and on_uvloop()


@pytest.mark.asyncio
async def test_other_async_tests_keep_their_loop():
    assert not isinstance(asyncio.get_running_loop(), CountingLoop)
'''

ON_UVLOOP_BY_INI = '''
import asyncio

import uvloop


async def test_the_ini_option_chooses_uvloop(runtime):
    assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
'''

UNKNOWN_LOOP = '''
import pytest


@pytest.mark.subjects(loop="trio")
async def test_on_trio(runtime):
    pass
'''

HOOK_OF_ITS_OWN = '''
import asyncio


def pytest_asyncio_loop_factories(config, item):
    return {"mine": asyncio.new_event_loop}
'''


def run_user_tests(tmp_path, tests, ini="", conftest=None):
    """Run `tests` as a user's test module, in a project of its own; returns pytest's output."""
    (tmp_path / "pytest.ini").write_text(f"[pytest]\n{ini}")  # the user's rootdir, not ours
    (tmp_path / "test_user.py").write_text(tests)
    if conftest is not None:
        (tmp_path / "conftest.py").write_text(conftest)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTEST_ADDOPTS", None)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_user.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout + done.stderr


def test_async_tests_using_the_fixture_run_without_configuring_pytest_asyncio(tmp_path):
    code, output = run_user_tests(tmp_path, USER_TESTS)
    assert code == 0, output
    assert re.search(r"\b11 passed", output), output


def test_the_ini_option_chooses_the_loop_of_every_test_using_the_fixture(tmp_path):
    code, output = run_user_tests(tmp_path, ON_UVLOOP_BY_INI, ini="subjects_loop = uvloop\n")
    assert code == 0, output
    assert re.search(r"\b1 passed", output), output


def test_an_unknown_kind_of_loop_is_an_error_that_names_the_known_ones(tmp_path):
    code, output = run_user_tests(tmp_path, UNKNOWN_LOOP)
    assert code != 0
    assert "unknown kind of event loop 'trio' (known: asyncio, uvloop)" in output


def test_a_loop_factories_hook_of_the_projects_own_answers_first_and_is_told_so(tmp_path):
    code, output = run_user_tests(tmp_path, ON_UVLOOP_BY_INI, conftest=HOOK_OF_ITS_OWN)
    assert code != 0
    assert "counts its pending callbacks" in output
    assert "`pytest_asyncio_loop_factories` hook of your own" in output
