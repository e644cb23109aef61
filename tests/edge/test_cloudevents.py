"""CloudEvents over HTTP: structured, binary and batch modes, and duplicates dropped by id."""

from __future__ import annotations

import msgspec

from tests.edge.apps import make_edge

STRUCTURED = {"content-type": "application/cloudevents+json"}
BATCH = {"content-type": "application/cloudevents-batch+json"}


def event(id: str, subject: str = "counter:1", type: str = "count", data=1, **more):
    return {"specversion": "1.0", "id": id, "source": "/sensors", "type": type,
            "subject": subject, "data": data, **more}


def encode(value) -> bytes:
    return msgspec.json.encode(value)


async def test_structured_mode_and_duplicates(edge, http):
    r = await http.post("/events", content=encode(event("e1", data=2)), headers=STRUCTURED)
    assert r.status_code == 202 and r.json() == {"id": "e1", "status": "accepted"}
    r = await http.post("/events", content=encode(event("e1", data=2)), headers=STRUCTURED)
    assert r.status_code == 202 and r.json() == {"id": "e1", "status": "duplicate"}
    # The same id from another source, or to another subject, is another event.
    await http.post("/events", content=encode({**event("e1"), "source": "/other"}),
                    headers=STRUCTURED)
    await http.post("/events", content=encode(event("e1", subject="counter:2")),
                    headers=STRUCTURED)
    await edge.rt.idle()
    assert await edge.rt.subject("counter:1").get("n") == 3
    assert await edge.rt.subject("counter:2").get("n") == 1


async def test_binary_mode(edge, http):
    headers = {"ce-specversion": "1.0", "ce-id": "b1", "ce-source": "/s", "ce-type": "count",
               "ce-subject": "counter:b", "content-type": "application/json"}
    for _ in range(3):
        r = await http.post("/events", content=b"5", headers=headers)
        assert r.status_code == 202
    assert r.json() == {"id": "b1", "status": "duplicate"}
    r = await http.post("/events", headers={**headers, "ce-id": "b2"})  # no data: null
    assert r.status_code == 202
    r = await http.post("/events", content=b"hello", headers={
        **headers, "ce-id": "b3", "ce-type": "echo", "content-type": "text/plain"})
    assert r.status_code == 202
    await edge.rt.idle()
    assert await edge.rt.subject("counter:b").get("n") == 6


async def test_batch_mode(edge, http):
    await http.post("/events", content=encode(event("x0")), headers=STRUCTURED)
    batch = [event("x0"), event("x1"), event("x1"), event("x2", subject="counter:9")]
    r = await http.post("/events", content=encode(batch), headers=BATCH)
    assert r.status_code == 202
    assert [e["status"] for e in r.json()["results"]] == [
        "duplicate", "accepted", "duplicate", "accepted"]
    r = await http.post("/events", content=b"[]", headers=BATCH)
    assert r.json() == {"results": []}
    await edge.rt.idle()
    assert await edge.rt.subject("counter:1").get("n") == 2
    assert await edge.rt.subject("counter:9").get("n") == 1


async def test_a_bad_event_refuses_the_whole_batch(edge, http):
    cases = [
        ([event("y1"), {**event("y2"), "subject": ""}], 400, "invalid_cloudevent"),
        ([event("y1"), {**event("y2"), "specversion": "0.3"}], 400, "invalid_cloudevent"),
        ([event("y1"), {k: v for k, v in event("y2").items() if k != "type"}], 400,
         "invalid_cloudevent"),
        ([event("y1"), event("y2", subject="bad name")], 400, "invalid_subject"),
        ([event("y1"), event("y2", subject="device:1", type="reboot", data={"delay": "x"})],
         422, "invalid_payload"),
        ([event("y1"), {**event("y2"), "data_base64": "AA=="}], 415,
         "unsupported_media_type"),
        ({"not": "a list"}, 400, "invalid_cloudevent"),
    ]
    for batch, status, code in cases:
        r = await http.post("/events", content=encode(batch), headers=BATCH)
        assert (r.status_code, r.json()["error"]) == (status, code), r.text
    r = await http.post("/events", content=b"{oops", headers=STRUCTURED)
    assert (r.status_code, r.json()["error"]) == (400, "bad_json")
    r = await http.post("/events", content=b"{}", headers={"content-type": "application/json"})
    assert r.status_code == 415
    await edge.rt.idle()
    assert await edge.rt.subject("counter:1").get("n") is None  # nothing was delivered
    # y1 was never delivered, so it is not a duplicate now.
    r = await http.post("/events", content=encode(event("y1")), headers=STRUCTURED)
    assert r.json()["status"] == "accepted"


async def test_a_refused_batch_may_be_sent_again_whole(serve):
    edge = await serve(make_edge(mailbox_size=2))
    rt = edge.rt
    async with edge.http() as http:
        batch = [event(f"z{i}", subject="b:1", type="blocked", data=None) for i in range(4)]
        r = await http.post("/events", content=encode(batch), headers=BATCH)
        # Two fill the mailbox (the subject is still activating), the third finds it full:
        # delivery stops there.
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        delivered = r.json()["detail"]["delivered"]
        assert [e["id"] for e in delivered] == ["z0", "z1"]
        rt.gate.set()
        await rt.idle()
        r = await http.post("/events", content=encode(batch), headers=BATCH)
        assert [e["status"] for e in r.json()["results"]] == [
            "duplicate", "duplicate", "accepted", "accepted"]
        await rt.idle()
        dead = rt.dead_letters.for_subject("b:1")
        assert dead == []


async def test_the_duplicate_memory_is_bounded(serve):
    edge = await serve(dedup_size=3)
    async with edge.http() as http:
        for i in range(5):
            await http.post("/events", content=encode(event(f"m{i}")), headers=STRUCTURED)
        statuses = []
        for i in (4, 0):
            r = await http.post("/events", content=encode(event(f"m{i}")), headers=STRUCTURED)
            statuses.append(r.json()["status"])
        assert statuses == ["duplicate", "accepted"]  # m0 was forgotten, oldest first
