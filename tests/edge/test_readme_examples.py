"""The README's edge examples (curl and WebSocket lines), done with httpx and websockets against
the device-health example they use."""

from __future__ import annotations

import json
from pathlib import Path

from websockets.asyncio.client import connect

import examples.device_health as device_health
from runtime import Runtime
from runtime.edge import Edge

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


async def test_the_readme_curl_and_websocket_lines(serve):
    section = README[README.index("## The edge server"):README.index("## Stores")]
    for line in (
        "curl -X PATCH localhost:8000/subjects/device:prod-01/properties "
        "-H 'content-type: application/json' -d '{\"cpu\": 95}'",
        "curl localhost:8000/subjects/device:prod-01 ",
        "curl -X POST 'localhost:8000/subjects/device:prod-01/events/status?reply=true'",
        "python -m websockets ws://localhost:8000/ws ",
        '{"op": "watch", "pattern": "device:*"}',
    ):
        assert line in section, line
    # A runtime of its own with the example's behaviours: not the one the module made at import.
    rt = Runtime()
    device_health.install(rt)
    edge = await serve(Edge(rt))
    async with edge.http() as http, connect(edge.ws_url) as ws:
        await ws.send('{"op": "watch", "pattern": "device:*"}')
        assert json.loads(await ws.recv())["op"] == "watching"
        r = await http.patch("/subjects/device:prod-01/properties", json={"cpu": 95},
                             headers={"host": "localhost:8000"})
        assert r.json() == {"name": "device:prod-01", "version": 1}
        r = await http.get("/subjects/device:prod-01")
        assert r.text == ('{"name":"device:prod-01","version":1,'
                          '"properties":{"cpu":95,"health":"critical"}}')
        assert f"# {r.text}" in section
        r = await http.post("/subjects/device:prod-01/events/status?reply=true")
        assert r.json() == {"cpu": 95, "mem": None, "errors": None, "health": "critical"}
        changes = [json.loads(await ws.recv()) for _ in range(2)]
        assert [(c["property"], c["new_value"]) for c in changes] == [
            ("cpu", 95), ("health", "critical")]
