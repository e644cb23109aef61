"""What clients send that decoders choke on: JSON nested too deep, names that are not UTF-8, half
a surrogate pair. Each is refused with a 400 that says what is wrong, over HTTP and WebSocket."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect

CE = {"content-type": "application/cloudevents+json"}
JSON = {"content-type": "application/json"}


def nested(depth: int) -> str:
    """JSON text of arrays nested `depth` levels deep."""
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [990, 5000, 100_000])
async def test_json_nested_too_deep_is_refused_with_400(edge, http, depth):
    deep = nested(depth)
    requests = [
        ("PATCH", "/subjects/d:1/properties", '{"v": ' + deep + "}", JSON),
        ("POST", "/subjects/d:1/events/count", deep, JSON),
        ("PATCH", "/subjects", '{"d:1": {"v": ' + deep + "}}", JSON),
        ("POST", "/events", json.dumps({"specversion": "1.0", "id": "1", "source": "t",
                                        "type": "count", "subject": "d:1"})[:-1]
         + ', "data": ' + deep + "}", CE),
    ]
    for method, path, body, headers in requests:
        answer = await http.request(method, path, content=body, headers=headers)
        assert answer.status_code == 400, (path, answer.text)
        assert answer.json()["error"] == "bad_json"
        assert "JSON nested more than 102 levels deep" in answer.json()["message"]
    assert (await http.get("/subjects/d:1")).json()["version"] == 0


async def test_values_up_to_the_depth_limit_are_stored_and_deeper_ones_refused(http):
    answer = await http.patch("/subjects/d:1/properties", content='{"v": ' + nested(100) + "}",
                              headers=JSON)
    assert answer.status_code == 200
    assert (await http.get("/subjects/d:1/properties/v")).json()["value"] == json.loads(
        nested(100))
    answer = await http.patch("/subjects/d:1/properties", content='{"v": ' + nested(101) + "}",
                              headers=JSON)
    assert answer.status_code == 422
    assert "more than 100 levels deep" in answer.json()["message"]


async def test_a_websocket_message_nested_too_deep_gets_an_error_and_the_connection_stays(edge):
    async with connect(edge.ws_url) as ws:
        await ws.send('{"op": "tell", "subject": "d:1", "type": "count", "id": 1, "payload": '
                      + nested(5000) + "}")
        error = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert (error["op"], error["error"], error["status"]) == ("error", "bad_json", 400)
        assert "JSON nested more than 102 levels deep" in error["message"]
        await ws.send(json.dumps({"op": "tell", "subject": "d:1", "type": "count", "id": 2}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"op": "ack", "id": 2}


async def test_a_name_that_is_not_utf8_is_refused_not_replaced(http):
    for path in ("/subjects/a%FF", "/subjects/a%FE", "/subjects/a%C3/properties/p"):
        answer = await http.get(path)
        assert answer.status_code == 400, path
        assert answer.json()["error"] == "invalid_subject"
        assert "is not UTF-8 once percent-decoded" in answer.json()["message"]
    answer = await http.patch("/subjects/a%FF/properties", json={"v": 1})
    assert answer.status_code == 400
    assert (await http.get("/subjects/a%C3%BF")).json()["name"] == "a\u00ff"  # UTF-8 is fine


@pytest.mark.parametrize("body, where", [(b'{"v": "\\ud800"}', "\\ud800 (byte 7)"),
                                         (b'{"v": "x\\uDBFFy"}', "\\uDBFF (byte 8)")])
async def test_half_a_surrogate_pair_is_named_as_such(http, body, where):
    answer = await http.patch("/subjects/s:1/properties", content=body, headers=JSON)
    assert answer.status_code == 400
    message = answer.json()["message"]
    assert "half of a UTF-16 surrogate pair without its other half" in message
    assert where in message


async def test_half_a_surrogate_pair_over_websocket_is_named_as_such(edge):
    async with connect(edge.ws_url) as ws:
        await ws.send(b'{"op": "tell", "subject": "s:1", "type": "count", "payload": "\\ud83d"}')
        error = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert error["error"] == "bad_json"
        assert "\\ud83d (byte 62) is half of a UTF-16 surrogate pair" in error["message"]
