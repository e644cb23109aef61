"""HTTP routes of the edge: messages, asks, state, and every refusal with its status."""

from __future__ import annotations

import asyncio
import re
from urllib.parse import quote

import httpx
import pytest

from runtime import Runtime
from runtime.edge import Token
from storage import SQLiteStore
from tests.edge.apps import make_edge

JSON = {"content-type": "application/json"}


async def test_an_event_is_accepted_then_handled(edge, http):
    r = await http.post("/subjects/counter:1/events/count", json=5)
    assert r.status_code == 202 and r.json() == {"accepted": True}
    await edge.rt.idle()
    r = await http.get("/subjects/counter:1")
    assert r.json() == {"name": "counter:1", "version": 1, "properties": {"n": 5}}


async def test_an_empty_body_is_a_null_payload(edge, http):
    assert (await http.post("/subjects/counter:2/events/count")).status_code == 202
    await edge.rt.idle()
    assert await edge.rt.subject("counter:2").get("n") == 1


async def test_reply_true_answers_with_the_handlers_reply(http):
    r = await http.post("/subjects/a:1/events/echo?reply=true", json={"x": [1, 2]})
    assert r.status_code == 200
    assert r.json() == {"subject": "a:1", "payload": {"x": [1, 2]}}


async def test_ask_errors(http):
    r = await http.post("/subjects/slow:1/events/sleep?reply=true&timeout=0.1", json=0.5)
    assert r.status_code == 504 and r.json()["error"] == "ask_timeout"
    r = await http.post("/subjects/a:1/events/nobody-handles-this?reply=true")
    assert r.status_code == 404 and r.json()["error"] == "no_handler"
    r = await http.post("/subjects/a:2/events/fail?reply=true")
    assert r.status_code == 500 and r.json()["error"] == "handler_failed"
    assert "hunter2" not in r.text and "ValueError" in r.text
    for bad in ("0", "-1", "abc", "1e9"):
        r = await http.post(f"/subjects/a:1/events/echo?reply=true&timeout={bad}")
        assert r.status_code == 400, bad
    assert (await http.post("/subjects/a:1/events/echo?reply=maybe")).status_code == 400


async def test_state_routes(edge, http):
    r = await http.patch("/subjects/device:9/properties", json={"cpu": 95, "mem": 10})
    assert r.status_code == 200 and r.json() == {"name": "device:9", "version": 1}
    r = await http.get("/subjects/device:9/properties/cpu")
    assert r.json() == {"name": "device:9", "property": "cpu", "value": 95}
    r = await http.get("/subjects/device:9/properties/nope")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = await http.delete("/subjects/device:9/properties/cpu")
    assert r.json() == {"name": "device:9", "property": "cpu", "deleted": True}
    r = await http.delete("/subjects/device:9/properties/cpu")
    assert r.json()["deleted"] is False
    r = await http.get("/subjects/device:9")
    assert r.json() == {"name": "device:9", "version": 2, "properties": {"mem": 10}}
    r = await http.get("/subjects/never:seen")
    assert r.json() == {"name": "never:seen", "version": 0, "properties": {}}


async def test_durable_patch_answers_once_the_snapshot_is_stored(serve, tmp_path):
    path = str(tmp_path / "edge.db")
    edge = await serve(make_edge(store=SQLiteStore(path), flush_delay=1.0))
    async with edge.http() as http:
        r = await http.patch("/subjects/d:1/properties?durable=true", json={"a": 1})
        assert r.json()["version"] == 1
        reader = SQLiteStore(path)  # a second connection sees the committed snapshot
        await reader.open()
        try:
            found = await reader.load_many(["d:1"])
        finally:
            await reader.close()
        assert found["d:1"].version == 1
        assert (await http.patch("/subjects/d:1/properties?durable=nah", json={})
                ).status_code == 400


async def test_many_subjects_are_patched_in_one_request(edge, http):
    await http.patch("/subjects/d:1/properties", json={"a": 1})
    r = await http.patch("/subjects?durable=true",
                         json={"d:1": {"a": 2}, "d:2": {"a": 1, "b": [1]}, "site/eu:1": {"c": 0}})
    assert r.status_code == 200
    assert r.json() == {"versions": {"d:1": 2, "d:2": 1, "site/eu:1": 1}}
    assert (await edge.rt.subject("d:2").state()).properties == {"a": 1, "b": [1]}


async def test_a_failing_subject_of_a_batch_fails_alone(edge, http):
    r = await http.patch("/subjects", json={"ok:1": {"a": 1}, "fragile:1": {"a": "boom"},
                                            "ok:2": {"a": 1}})
    assert r.status_code == 500
    body = r.json()
    assert body["error"] == "handler_failed"
    assert body["message"].startswith("1 of 3 subjects failed; the first: ")
    assert body["detail"]["versions"] == {"ok:1": 1, "ok:2": 1}
    assert body["detail"]["errors"]["fragile:1"]["error"] == "handler_failed"
    assert "refuses boom" not in r.text  # a handler's message stays in the dead-letter log
    assert await edge.rt.subject("ok:2").get("a") == 1
    assert (await edge.rt.subject("fragile:1").state()).version == 0
    # The same batch again is safe: what was applied is applied already.
    r = await http.patch("/subjects", json={"ok:1": {"a": 1}, "ok:2": {"a": 1}})
    assert r.json() == {"versions": {"ok:1": 1, "ok:2": 1}}


async def test_a_bad_batch_is_refused_whole(edge, http):
    for body, code in (([{"d:1": {"a": 1}}], "bad_request"), ({}, "bad_request"),
                       ({"d:1": {"a": 1}, "bad name": {"a": 1}}, "invalid_subject"),
                       ({"d:1": {"a": 1}, "d:2": [1]}, "bad_request"),
                       ({"d:1": {"a": 1}, "d:2": {"": 1}}, "bad_request")):
        r = await http.patch("/subjects", json=body)
        assert (r.status_code, r.json()["error"]) == (400, code), body
    assert edge.rt.active_subjects() == []


async def test_names_with_a_slash_travel_percent_encoded(edge, http):
    r = await http.patch("/subjects/site%2Feu:1/properties", json={"a": 1})
    assert r.status_code == 200 and r.json()["name"] == "site/eu:1"
    assert (await http.get("/subjects/site%2Feu:1/properties/a")).json()["value"] == 1
    assert await edge.rt.subject("site/eu:1").get("a") == 1
    assert (await http.get("/subjects/site/eu:1")).status_code == 404


async def test_bad_input_is_refused_with_its_status(edge, http):
    cases = [
        (http.post("/subjects/a:1/events/count", content=b"{not json", headers=JSON),
         400, "bad_json"),
        (http.post("/subjects/a:1/events/count", content=b"1", headers={
            "content-type": "text/plain"}), 415, "unsupported_media_type"),
        (http.post("/subjects/bad%20name/events/count", json=1), 400, "invalid_subject"),
        (http.post("/subjects/%01/events/count", json=1), 400, "invalid_subject"),
        (http.post("/subjects/" + "x" * 300 + "/events/count", json=1), 400,
         "invalid_subject"),
        (http.post("/subjects/a:1/events/bad%20type", json=1), 400, "invalid_event_type"),
        (http.post("/subjects/device:1/events/reboot", json={"delay": "soon"}), 422,
         "invalid_payload"),
        (http.post("/subjects/device:1/events/reboot", json=[]), 422, "invalid_payload"),
        (http.patch("/subjects/a:1/properties", json=[1, 2]), 400, "bad_request"),
        (http.patch("/subjects/a:1/properties"), 400, "bad_json"),
        (http.patch("/subjects/a:1/properties", content=b'{"a": "x\\u0000"}', headers=JSON),
         422, "value_not_storable"),
        (http.patch("/subjects", content=b'{"a:1": {"a": ["\\u0000"]}}', headers=JSON), 422,
         "value_not_storable"),
        (http.get("/no/such/route"), 404, "not_found"),
        (http.put("/subjects/a:1"), 405, "method_not_allowed"),
    ]
    for request, status, code in cases:
        r = await request
        assert (r.status_code, r.json()["error"]) == (status, code), r.text
        assert r.headers["content-type"] == "application/json"
    assert edge.rt.dead_letters.for_subject("a:1") == []


async def test_a_valid_schema_payload_reaches_the_handler_with_defaults(edge, http):
    r = await http.post("/subjects/device:1/events/reboot?reply=true", json={"delay": 3})
    assert r.json() == {"delay": 3, "reason": "unspecified"}
    # The schema is declared for device:* only.
    r = await http.post("/subjects/other:1/events/reboot", json={"delay": "soon"})
    assert r.status_code == 202


async def test_bodies_over_the_limit_are_refused(serve):
    edge = await serve(max_body=1000)
    async with edge.http() as http:
        r = await http.post("/subjects/a:1/events/count", content=b"1" * 1001, headers=JSON)
        assert r.status_code == 413 and r.json()["error"] == "too_large"

        async def chunks():  # no Content-Length: counted while streaming
            for _ in range(20):
                yield b" " * 100

        r = await http.post("/subjects/a:1/events/count", content=chunks(), headers=JSON)
        assert r.status_code == 413
        r = await http.post("/subjects/a:1/events/count", content=b"1" * 999, headers=JSON)
        assert r.status_code == 202


async def test_a_full_mailbox_answers_503_with_retry_after_and_loses_nothing(serve):
    edge = await serve(make_edge(mailbox_size=2))
    rt = edge.rt
    async with edge.http() as http:
        codes = [(await http.post("/subjects/b:1/events/blocked")).status_code
                 for _ in range(5)]
        # One turn running (waiting at the gate), two in the mailbox, two refused.
        assert codes == [202, 202, 202, 503, 503]
        r = await http.post("/subjects/b:1/events/blocked")
        assert r.headers["retry-after"] == "1" and r.json()["error"] == "mailbox_full"
        # Other subjects are served meanwhile.
        assert (await http.post("/subjects/c:1/events/count")).status_code == 202
        rt.gate.set()
        await rt.idle()
        assert await rt.subject("c:1").get("n") == 1
        assert await rt.subject("b:1").get("released") is True
        assert (await http.post("/subjects/b:1/events/blocked")).status_code == 202


async def test_many_bad_clients_do_not_disturb_a_good_one(edge):
    async with edge.http() as good, edge.http() as bad:
        async def misbehave():
            for i in range(30):
                await bad.post("/subjects/a:1/events/count", content=b"{", headers=JSON)
                await bad.post(f"/subjects/x {i}/events/count", json=1)

        async def behave():
            for _ in range(30):
                assert (await good.post("/subjects/ok:1/events/count")).status_code == 202

        await asyncio.gather(misbehave(), behave(), misbehave())
        await edge.rt.idle()
        assert await edge.rt.subject("ok:1").get("n") == 30


async def test_health_and_readiness(serve, tmp_path):
    edge = await serve(make_edge(store=SQLiteStore(str(tmp_path / "r.db"))))
    async with edge.http() as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        assert (await http.get("/readyz")).json() == {"status": "ready"}
        await edge.rt.store.close()  # the store becomes unreachable
        r = await http.get("/readyz")
        assert r.status_code == 503 and r.json()["error"] == "store_unavailable"
        assert (await http.get("/healthz")).status_code == 200
        await edge.rt.store.open()
        assert (await http.get("/readyz")).status_code == 200


async def test_openapi_is_generated_from_the_routes_and_schemas(http):
    doc = (await http.get("/openapi.json")).json()
    paths = doc["paths"]
    send = paths["/subjects/{name}/events/{event_type}"]
    assert set(send) == {"post"}
    assert set(paths["/subjects/{name}/properties/{prop}"]) == {"get", "delete"}
    assert "patch" in paths["/subjects/{name}/properties"]
    assert set(paths["/subjects"]) == {"patch"}
    assert "post" in paths["/events"] and "get" in paths["/readyz"]
    # A schema declared for every subject describes its own path's body; one declared for
    # some subjects (reboot, device:*) cannot, and is listed on the generic operation.
    note = paths["/subjects/{name}/events/note"]["post"]
    ref = note["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert schema["required"] == ["text"] and schema["properties"]["text"]["type"] == "string"
    assert "/subjects/{name}/events/reboot" not in paths
    listed = {s["event_type"]: s for s in send["post"]["x-payload-schemas"]}
    assert listed["reboot"]["subjects"] == "device:*"
    responses = send["post"]["responses"]
    assert {"200", "202", "409", "422", "504"} <= set(responses)


async def test_openapi_requires_a_token_exactly_where_the_server_does(serve):
    for tokens, secured in (((), False),
                            ((Token.from_secret("t", "s3cret"),), True)):
        edge = await serve(tokens=tokens)
        async with edge.http() as http:
            doc = (await http.get("/openapi.json")).json()
        send = doc["paths"]["/subjects/{name}/events/{event_type}"]["post"]
        health = doc["paths"]["/healthz"]["get"]
        assert ("security" in send, "401" in send["responses"]) == (secured, secured)
        if secured:
            assert send["security"] == [{"bearer": []}]  # required, not optional
        assert "security" not in health and "401" not in health["responses"]


async def test_the_document_limits_names_as_the_server_does(http):
    doc = (await http.get("/openapi.json")).json()
    name = doc["components"]["schemas"]["edge.Name"]
    pattern = re.compile(name["pattern"].replace("$", r"\Z"))
    for valid in ("a", "device:prod-01", "é/ü", "\U0001F600", "x" * 300):
        assert pattern.match(valid), valid
    for invalid in ("a b", "a\x00", "tab\t", "\u2028", "\U000E0001", "\U000A0000", ""):
        assert not pattern.match(invalid), repr(invalid)
        assert (await http.get(f"/subjects/{quote(invalid, safe='')}")).status_code in (
            400, 404), repr(invalid)
    assert name["maxLength"] == 255


async def test_timeout_is_checked_even_without_reply(http):
    for bad in ("0", "-1", "null", "1e9"):
        r = await http.post(f"/subjects/a:1/events/count?timeout={bad}")
        assert r.status_code == 400, bad
    assert (await http.post("/subjects/a:1/events/count?timeout=5")).status_code == 202


async def test_405_allows_every_method_of_the_path(http):
    r = await http.request("OPTIONS", "/subjects/a:1/properties/p")
    assert r.status_code == 405
    assert r.headers["allow"] == "DELETE, GET, HEAD"
    r = await http.put("/subjects/a:1/events/count")
    assert r.status_code == 405 and r.headers["allow"] == "POST"


async def test_cors_is_configurable(serve):
    edge = await serve(cors_origins=("https://dash.example",))
    async with edge.http() as http:
        preflight = {"origin": "https://dash.example", "access-control-request-method": "POST",
                     "access-control-request-headers": "content-type"}
        r = await http.options("/subjects/a:1/events/count", headers=preflight)
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "https://dash.example"
        r = await http.options("/subjects/a:1/events/count",
                               headers={**preflight, "origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers
    default = await serve()
    async with default.http() as http:
        r = await http.get("/healthz", headers={"origin": "https://dash.example"})
        assert "access-control-allow-origin" not in r.headers


async def test_an_unauthenticated_edge_answers_only_to_loopback_host_names(edge, http):
    r = await http.get("/subjects/a:1", headers={"host": "evil.example"})
    assert r.status_code == 400 and r.json()["error"] == "bad_host"
    for host in ("localhost", "127.0.0.1:1234", "[::1]:80"):
        assert (await http.get("/subjects/a:1", headers={"host": host})).status_code == 200


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "edge.example"])
def test_non_loopback_without_tokens_is_refused_unless_insecure(host):
    from runtime.edge import EdgeConfig, InsecureBinding, create_app

    with pytest.raises(InsecureBinding):
        create_app(Runtime(), EdgeConfig(host=host))
    create_app(Runtime(), EdgeConfig(host=host, insecure=True))


async def test_connection_errors_are_not_server_errors(edge):
    # A client that goes away mid-request does not take the server down.
    async with httpx.AsyncClient(base_url=edge.url, timeout=0.05) as hasty:
        with pytest.raises(httpx.TimeoutException):
            await hasty.post("/subjects/a:1/events/sleep?reply=true", json=0.5)
    async with edge.http() as http:
        assert (await http.get("/healthz")).status_code == 200
