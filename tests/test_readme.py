"""The README is the contract: every Python snippet in it runs, and the examples it names run
and print what it says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
SNIPPETS = re.findall(r"```python\n(.*?)```", README, re.S)


def run_python(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_the_readme_has_snippets_and_the_two_commands():
    assert SNIPPETS
    assert "make run" in README and "make test" in README
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[f"snippet{i}" for i in range(len(SNIPPETS))])
def test_readme_snippet_runs(snippet, tmp_path):
    script = tmp_path / "snippet.py"
    script.write_text(snippet)
    done = run_python(str(script))
    assert done.returncode == 0, done.stderr


def test_tour_prints_what_the_comments_say():
    done = run_python("-c", SNIPPETS[0])
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "critical"
    assert lines[1] == "{'health': 'critical', 'rebooting_in': 5}"


def test_device_health_example_prints_transitions():
    done = run_python("-m", "examples.device_health")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:4] == [
        "device:prod-01: ok -> warning",
        "device:prod-01: warning -> critical",
        "device:prod-01: critical -> warning",
        "device:prod-01: warning -> ok",
    ]
    assert "alerts: 1" in done.stdout


def test_supervision_example_restarts_stops_and_redelivers():
    done = run_python("-m", "examples.supervision")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.count("subject-restarted sensor:t1") == 2
    assert "subject-stopped sensor:t1" in out
    assert "attempt 4: subject 'sensor:t1' is stopped" in out
    assert out.count("dead letter #") == 3
    assert "re-delivered: 21.5 -> 21.5" in out
