"""What a first run of `subjects` shows when something is wrong: one clear line and a non-zero
exit, never a traceback; and `subjects token --file` maintaining a tokens file."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.edge import Token, load_tokens

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "runtime.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def errors(done: subprocess.CompletedProcess[str]) -> list[str]:
    """The lines of stderr that are not uvicorn's 'Started server process' line."""
    return [line for line in done.stderr.splitlines() if "Started server process" not in line]


def test_a_busy_port_is_one_line():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = cli("serve", "tests.edge.apps:edge", "--port", str(port))
    assert done.returncode == 1
    assert errors(done) == [f"ERROR: cannot listen on 127.0.0.1 port {port}: "
                            "Address already in use"], done.stderr


@pytest.mark.parametrize(("store", "code", "message"), [
    ("foo://x", 2, "subjects serve: unknown store URL 'foo://x'"),
    ("sqlite:////nonexistent-directory/state.db", 1,
     "ERROR: cannot start the runtime: cannot open SQLite database"),
    ("redis://127.0.0.1:1/0", 1, "ERROR: cannot start the runtime: Redis 127.0.0.1:1: "),
])
def test_a_bad_store_is_one_line(store, code, message):
    done = cli("serve", "tests.edge.apps:edge", "--port", "0", "--store", store)
    assert done.returncode == code
    (line,) = errors(done)
    assert line.startswith(message), done.stderr


def test_a_missing_attribute_is_named():
    done = cli("serve", "tests.edge.apps:missing")
    assert done.returncode == 2
    assert done.stderr == "subjects serve: module 'tests.edge.apps' has no attribute 'missing'\n"


def test_token_file_is_written_and_updated_atomically_and_privately(tmp_path):
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps([{"name": "old", "secret": "do-not-print-me"}]))
    path.chmod(0o644)
    done = cli("token", "ops", "--subjects", "device:*", "--rights", "read,watch",
               "--file", str(path))
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[1].strip()
    assert done.stdout.splitlines()[2] == f"added token 'ops' in {path}"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    done = cli("token", "ops", "--file", str(path))  # a rotation replaces the entry
    assert done.returncode == 0, done.stderr
    second = done.stdout.splitlines()[1].strip()
    assert done.stdout.splitlines()[2] == f"replaced token 'ops' in {path}"
    for output in (done.stdout, done.stderr):
        assert "do-not-print-me" not in output and first not in output
    old, ops = load_tokens(path)
    assert old == Token.from_secret("old", "do-not-print-me")
    assert ops == Token.from_secret("ops", second)
    assert second not in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokens.json"]  # no temporary left


def test_token_file_that_is_not_one_is_left_alone(tmp_path):
    path = tmp_path / "tokens.json"
    path.write_text('{"not": "a list"}')
    done = cli("token", "ops", "--file", str(path))
    assert done.returncode == 2
    assert done.stderr.startswith("subjects token: cannot read tokens file")
    assert path.read_text() == '{"not": "a list"}' and done.stdout == ""
