"""Bearer tokens, rights per subject pattern, and the refusal to listen unprotected."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from runtime.edge import Token, load_tokens

ROOT = Path(__file__).resolve().parents[2]
ADMIN = "admin-secret-1"
VIEWER = "viewer-secret-2"
TOKENS = (
    Token.from_secret("admin", ADMIN),
    Token.from_secret("viewer", VIEWER, subjects=["device:*"], rights=["read", "watch"]),
)


def bearer(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


@pytest.fixture
async def guarded(serve):
    return await serve(tokens=TOKENS)


async def test_missing_or_wrong_token_is_401(guarded):
    async with guarded.http() as http:
        r = await http.get("/subjects/device:1")
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
        assert r.headers["www-authenticate"].startswith("Bearer")
        for header in ("Bearer nope", "Basic " + ADMIN, "Bearer", ADMIN):
            r = await http.get("/subjects/device:1", headers={"authorization": header})
            assert r.status_code == 401, header
        r = await http.post("/events", headers={"ce-specversion": "1.0"})
        assert r.status_code == 401
        # Probes need no token.
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/readyz")).status_code == 200


async def test_rights_are_per_operation_and_subject_pattern(guarded):
    async with guarded.http(headers=bearer(VIEWER)) as viewer, \
            guarded.http(headers=bearer(ADMIN)) as admin:
        assert (await admin.patch("/subjects/device:1/properties", json={"a": 1})
                ).status_code == 200
        assert (await viewer.get("/subjects/device:1")).json()["properties"] == {"a": 1}
        assert (await viewer.get("/subjects/device:1/properties/a")).status_code == 200
        for request in (viewer.get("/subjects/user:1"),
                        viewer.patch("/subjects/device:1/properties", json={"a": 2}),
                        viewer.delete("/subjects/device:1/properties/a"),
                        viewer.post("/subjects/device:1/events/count"),
                        viewer.post("/subjects/device:1/events/echo?reply=true"),
                        viewer.patch("/subjects", json={"device:2": {"a": 1}})):
            r = await request
            assert r.status_code == 403 and r.json()["error"] == "forbidden", r.text
        ce = {"specversion": "1.0", "id": "1", "source": "s", "type": "count",
              "subject": "device:1"}
        r = await viewer.post("/events", content=msgspec.json.encode(ce),
                              headers={"content-type": "application/cloudevents+json"})
        assert r.status_code == 403
        assert (await admin.get("/subjects/device:1")).json()["version"] == 1


async def test_an_authenticated_edge_accepts_any_host(guarded):
    async with guarded.http(headers=bearer(ADMIN)) as admin:
        r = await admin.get("/subjects/a:1", headers={"host": "edge.example"})
        assert r.status_code == 200


async def test_websocket_handshake_needs_a_token(guarded):
    with pytest.raises(InvalidStatus) as refused:
        async with connect(guarded.ws_url):
            pass
    assert refused.value.response.status_code == 401
    assert json.loads(refused.value.response.body)["error"] == "unauthorized"
    async with connect(guarded.ws_url, additional_headers=bearer(VIEWER)) as ws:
        await ws.send(json.dumps({"op": "tell", "subject": "device:1", "type": "count",
                                  "id": 1}))
        error = json.loads(await ws.recv())
        assert error["op"] == "error" and error["error"] == "forbidden" and error["id"] == 1
        await ws.send(json.dumps({"op": "watch", "pattern": "user:1"}))
        assert json.loads(await ws.recv())["error"] == "forbidden"


async def test_a_wide_watch_only_sees_what_the_token_may_watch(guarded):
    async with connect(guarded.ws_url, additional_headers=bearer(VIEWER)) as ws, \
            guarded.http(headers=bearer(ADMIN)) as admin:
        await ws.send(json.dumps({"op": "watch", "pattern": "*"}))
        assert json.loads(await ws.recv())["op"] == "watching"
        await admin.patch("/subjects/user:1/properties", json={"secret": 1})
        await admin.patch("/subjects/device:7/properties", json={"cpu": 1})
        change = json.loads(await ws.recv())
        assert (change["subject"], change["property"]) == ("device:7", "cpu")


async def test_websocket_origins_are_checked(serve):
    edge = await serve(cors_origins=("https://dash.example",))
    with pytest.raises(InvalidStatus) as refused:
        async with connect(edge.ws_url, origin="https://evil.example"):
            pass
    assert refused.value.response.status_code == 403
    async with connect(edge.ws_url, origin="https://dash.example") as ws:
        await ws.send(json.dumps({"op": "watch", "pattern": "*", "id": "w"}))
        assert json.loads(await ws.recv())["op"] == "watching"


def test_tokens_file_takes_secrets_or_digests(tmp_path):
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps([
        {"name": "a", "secret": "s1", "subjects": ["device:*"], "rights": ["read"]},
        {"name": "b", "sha256": Token.from_secret("b", "s2").sha256},
    ]))
    a, b = load_tokens(path)
    assert a == Token.from_secret("a", "s1", subjects=["device:*"], rights=["read"])
    assert b.rights == {"read", "write", "watch"} and b.subjects == ("*",)
    assert "s1" not in repr(a)
    for bad in ([{"name": "c"}], [{"name": "c", "secret": "x", "rights": ["admin"]}],
                [{"name": "c", "secret": "x"}, {"name": "c", "secret": "y"}], {"x": 1}):
        path.write_text(json.dumps(bad))
        with pytest.raises(ValueError):
            load_tokens(path)
    path.write_text(json.dumps([{"name": "long", "secret": "x", "subjects": ["d:" * 600]}]))
    with pytest.raises(ValueError, match="token 'long': a pattern is 1200 characters long; "
                                         "the limit is 1024"):
        load_tokens(path)


def cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "runtime.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_the_cli_refuses_a_public_address_without_tokens():
    done = cli("serve", "tests.edge.apps:edge", "--host", "0.0.0.0")
    assert done.returncode == 2
    assert "without authentication" in done.stderr and "--insecure" in done.stderr


def test_the_cli_makes_tokens_for_the_tokens_file(tmp_path):
    done = cli("token", "ops", "--subjects", "device:*", "--rights", "read,watch")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    secret, entry = lines[1].strip(), json.loads(lines[3])
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps([entry]))
    (token,) = load_tokens(path)
    assert token == Token.from_secret("ops", secret, subjects=["device:*"],
                                      rights=["read", "watch"])
    assert cli("token", "x", "--rights", "root").returncode == 2
