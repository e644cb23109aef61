"""Over the edge, a client's bad input is answered and forgotten: it stops no subject, and above
all none it has no right to. A halted runtime fails its health probes."""

from __future__ import annotations

import json

import pytest
from websockets.asyncio.client import connect

from actors import InvalidPayload
from runtime import Backoff, Policy
from runtime.edge import Edge, Token
from tests.edge.apps import make_edge

DEVICES = "devices-only-secret"
ADMIN = "admin-secret"
TOKENS = (
    Token.from_secret("admin", ADMIN),
    Token.from_secret("devices", DEVICES, subjects=["device:*"]),
)


async def test_sixteen_asks_nobody_handles_halt_nothing(edge):
    async with edge.http() as http:
        await http.patch("/subjects/user:1/properties", json={"name": "ada"})
        for s in range(1, 5):  # the reproduction
            for _ in range(4):
                r = await http.post(f"/subjects/x:{s}/events/nope", params={"reply": "true"})
                assert r.status_code == 404 and r.json()["error"] == "no_handler"
        r = await http.get("/subjects/anything")
        assert r.status_code == 200
        assert (await http.get("/subjects/user:1")).json()["properties"] == {"name": "ada"}
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/readyz")).status_code == 200


async def test_a_narrow_token_cannot_stop_other_subjects_over_websocket(serve):
    served = await serve(tokens=TOKENS)
    headers = {"authorization": f"Bearer {DEVICES}"}
    async with connect(served.ws_url, additional_headers=headers) as ws:
        for i in range(40):
            await ws.send(json.dumps({"op": "ask", "id": i, "subject": f"device:{i % 4}",
                                      "type": "nope"}))
            answer = json.loads(await ws.recv())
            assert (answer["id"], answer["error"]) == (i, "no_handler")
    async with served.http(headers={"authorization": f"Bearer {ADMIN}"}) as http:
        r = await http.patch("/subjects/user:1/properties", json={"x": 1})
        assert r.status_code == 200
        r = await http.patch("/subjects/device:0/properties", json={"x": 1})
        assert r.status_code == 200


def strict_edge() -> Edge:
    edge = make_edge(root=Policy(max_restarts=0, within=60, backoff=Backoff(0.001),
                                 escalate=True))

    @edge.runtime.on("checked")
    async def checked(ctx):
        if not isinstance(ctx.payload, int):
            raise InvalidPayload(f"checked wants an integer, not {ctx.payload!r}")
        return ctx.payload

    return edge


async def test_a_handler_refusing_its_payload_answers_422_and_stops_nothing(serve):
    served = await serve(strict_edge())  # the first real failure would halt this runtime
    async with served.http() as http:
        for _ in range(5):
            r = await http.post("/subjects/c:1/events/checked", params={"reply": "true"},
                                json="two")
            assert r.status_code == 422
            assert r.json() == {"error": "invalid_payload",
                                "message": "checked wants an integer, not 'two'"}
        r = await http.post("/subjects/c:1/events/checked", params={"reply": "true"}, json=2)
        assert (r.status_code, r.json()) == (200, 2)
        assert (await http.get("/healthz")).status_code == 200


@pytest.mark.parametrize("probe", ["/healthz", "/readyz"])
async def test_a_halted_runtime_fails_its_probes(serve, probe):
    served = await serve(strict_edge())
    async with served.http() as http:
        assert (await http.get(probe)).status_code == 200
        r = await http.post("/subjects/a:1/events/fail", params={"reply": "true"})
        assert r.status_code == 500  # a real failure: with escalation on at the root, it halts
        r = await http.get(probe)
        assert r.status_code == 503
        assert r.json()["error"] == "halted"
        assert "the runtime is halted: more than 0 failures escalated" in r.json()["message"]
        assert (await http.get("/subjects/b:1")).status_code == 409
