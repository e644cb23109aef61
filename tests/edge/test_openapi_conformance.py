"""The OpenAPI document against the server: schemathesis (`st run --checks all`, seeded and
bounded) fuzzes a real edge process, served with tokens and without, and every request the
document allows must be accepted, every one it forbids refused, every answer documented."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.edge.test_shutdown import free_port

ROOT = Path(__file__).resolve().parents[2]
CONFIG = Path(__file__).with_name("schemathesis.toml")
SECRET = "conformance-secret"
# Examples per operation. Most of a run's time goes into building generators from the name
# pattern (hypothesis expands a character class one character at a time, and names may hold
# some 144,000), which is also why the `too_slow` health check, about generation speed and
# not the API, is suppressed; every check of the API stays on.
EXAMPLES = 5
SEED = 20261204


def serve(tmp_path: Path, tokens: bool) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    args = [sys.executable, "-m", "runtime.cli", "serve", "tests.edge.apps:edge", "--port",
            str(port), "--no-access-log", "--log-level", "warning"]
    if tokens:
        path = tmp_path / "tokens.json"
        path.write_text(f'[{{"name": "fuzzer", "secret": "{SECRET}"}}]')
        args += ["--tokens", str(path)]
    # Its log goes to a file: a pipe nobody reads would stall the server once full.
    with open(tmp_path / f"edge-tokens-{tokens}.log", "w") as log:
        proc = subprocess.Popen(args, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                stdout=subprocess.DEVNULL, stderr=log, text=True)
    return proc, f"http://127.0.0.1:{port}"


def until_serving(url: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(url + "/healthz").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    pytest.fail(f"the edge did not answer /healthz within 15 s (exit code {proc.poll()}; "
                "its log is in the test's tmp_path)")


def schemathesis(url: str, workdir: Path, tokens: bool) -> subprocess.Popen[str]:
    """`st run` in its own process; it fails (not skips) this test if schemathesis is
    missing."""
    args = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "run",
            url + "/openapi.json", "--checks", "all", "--seed", str(SEED), "--max-examples",
            str(EXAMPLES), "--generation-database", "none", "--no-color",
            "--request-timeout", "70", "--suppress-health-check", "too_slow"]
    if tokens:
        args += ["--header", f"Authorization: Bearer {SECRET}"]
    workdir.mkdir()
    return subprocess.Popen(args, cwd=workdir, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_the_document_states_what_the_server_does(tmp_path):
    servers = {tokens: serve(tmp_path, tokens) for tokens in (False, True)}
    runs: dict[bool, subprocess.Popen[str]] = {}
    try:
        for tokens, (proc, url) in servers.items():
            until_serving(url, proc)
            # The two runs go side by side: each spends most of its time generating.
            runs[tokens] = schemathesis(url, tmp_path / f"tokens-{tokens}", tokens)
        failed = []
        for tokens, run in runs.items():
            # About 65 s of CPU for both runs, 40 s on two idle cores; a loaded machine takes
            # several times that, which is no failure of the document.
            output, _ = run.communicate(timeout=600)
            if run.returncode != 0:
                failed.append(f"--- with tokens: {tokens}, exit code {run.returncode}\n"
                              f"{output}")
        assert not failed, "\n".join(failed)
    finally:
        for proc in [*runs.values(), *(proc for proc, _ in servers.values())]:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)
