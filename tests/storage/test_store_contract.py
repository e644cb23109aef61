"""The snapshot-store contract, run against every backend: what the runtime may rely on.

Each test runs on memory, SQLite (a file in tmp_path), PostgreSQL and Redis (real servers, each
test in its own table or key prefix).
"""

from __future__ import annotations

import msgspec
import pytest

from storage import Delete, Snapshot, SnapshotStore, StoreUnavailable, Write
from tests.storage.conftest import Backend

UNICODE_NAMES = [
    "café/crème",
    "名前:山田",
    "emoji 🙂 smile",
    "quotes ' \" and \\ backslash",
    "glob * ? [chars]",
    "percent % and _ underscore",
    "line\nbreak",
    "a" * 300,
]


def write(name: str, expected: int, version: int, **props: object) -> Write:
    return Write(name, expected, version, msgspec.json.encode(props), b'{"tag":"ext"}')


def assert_json(backend: Backend, stored: bytes, sent: bytes) -> None:
    if backend.keeps_bytes:
        assert stored == sent
    else:
        assert msgspec.json.decode(stored) == msgspec.json.decode(sent)


async def test_satisfies_protocol(store: SnapshotStore) -> None:
    assert isinstance(store, SnapshotStore)
    await store.ping()


async def test_missing_names_are_absent(store: SnapshotStore) -> None:
    assert await store.load_many(["nobody", "nobody else"]) == {}
    assert await store.load_many([]) == {}
    assert await store.save_many([]) == []
    assert await store.delete_many([]) == []


async def test_round_trip(store: SnapshotStore, backend: Backend) -> None:
    props = (
        b'{"z":1,"a":[1,2.5,{"k":null}],"s":"\\u00e9\\n\\"q\\"","big":12345678901234567890,'
        b'"t":true,"nested":{"b":{},"a":[]}}'
    )
    ext = b'{"created":"2024-01-01T00:00:00Z"}'
    assert await store.save_many([Write("alice", 0, 1, props, ext)]) == []
    [(name, snap)] = (await store.load_many(["alice", "bob"])).items()
    assert name == "alice" and snap.name == "alice" and snap.version == 1
    assert_json(backend, snap.properties, props)
    assert_json(backend, snap.ext, ext)


async def test_default_ext_and_large_state(store: SnapshotStore, backend: Backend) -> None:
    props = msgspec.json.encode({"blob": "x" * 300_000, "items": list(range(10_000))})
    assert await store.save_many([Write("big", 0, 1, props)]) == []
    snap = (await store.load_many(["big"]))["big"]
    assert_json(backend, snap.properties, props)
    assert msgspec.json.decode(snap.ext) == {}


async def test_versions_checked_per_write(store: SnapshotStore) -> None:
    assert await store.save_many([write("a", 0, 1, n=1), write("b", 0, 1, n=1)]) == []
    refused = await store.save_many([
        write("a", 0, 5, n=2),  # expected 0 but "a" exists: refused
        write("b", 1, 2, n=2),  # matches
        write("c", 0, 1, n=2),  # new
        write("d", 3, 4, n=2),  # expects a version of a subject that does not exist
    ])
    assert refused == ["a", "d"]
    rows = await store.load_many(["a", "b", "c", "d"])
    assert {name: (s.version, msgspec.json.decode(s.properties)) for name, s in rows.items()} == {
        "a": (1, {"n": 1}),
        "b": (2, {"n": 2}),
        "c": (1, {"n": 2}),
    }
    # A stale version (the one "b" had before) is refused; the current one is accepted.
    assert await store.save_many([write("b", 1, 3, n=3), write("c", 1, 2, n=3)]) == ["b"]
    rows = await store.load_many(["b", "c"])
    assert (rows["b"].version, rows["c"].version) == (2, 2)


async def test_versions_are_exact_64_bit(store: SnapshotStore) -> None:
    high = 2**62 + 1  # not representable as a double: catches float comparisons
    assert await store.save_many([write("v", 0, high)]) == []
    assert await store.save_many([write("v", high - 1, high + 2)]) == ["v"]
    assert await store.save_many([write("v", high, high + 1)]) == []
    assert (await store.load_many(["v"]))["v"].version == high + 1


async def test_delete_checks_versions(store: SnapshotStore) -> None:
    await store.save_many([write("a", 0, 2), write("b", 0, 3), write("c", 0, 1)])
    refused = await store.delete_many([
        Delete("a", 2),  # matches: deleted
        Delete("b", 1),  # stale: refused, kept
        Delete("ghost", 7),  # absent: nothing to refuse
    ])
    assert refused == ["b"]
    assert set(await store.load_many(["a", "b", "c", "ghost"])) == {"b", "c"}
    # A deleted subject can be created again from scratch.
    assert await store.save_many([write("a", 0, 1, again=True)]) == []


async def test_large_batches(store: SnapshotStore) -> None:
    names = [f"subject-{i:05d}" for i in range(2_500)]
    assert await store.save_many([write(n, 0, 1, i=i) for i, n in enumerate(names)]) == []
    loaded = await store.load_many([*names, "missing"])
    assert len(loaded) == len(names)
    assert msgspec.json.decode(loaded["subject-01234"].properties) == {"i": 1234}

    # Every other write is stale; the rest of the batch must still be applied.
    writes = [write(n, 1 if i % 2 else 9, 2, i=-i) for i, n in enumerate(names)]
    refused = await store.save_many(writes)
    assert refused == names[0::2]
    loaded = await store.load_many(names)
    assert [loaded[n].version for n in names[:4]] == [1, 2, 1, 2]

    refused = await store.delete_many([Delete(n, 2) for n in names])
    assert refused == names[0::2]
    assert set(await store.load_many(names)) == set(names[0::2])


async def test_unicode_names(store: SnapshotStore) -> None:
    assert await store.save_many([write(n, 0, 1, who=n) for n in UNICODE_NAMES]) == []
    loaded = await store.load_many(UNICODE_NAMES)
    assert sorted(loaded) == sorted(UNICODE_NAMES)
    for name, snap in loaded.items():
        assert snap.name == name
        assert msgspec.json.decode(snap.properties) == {"who": name}
    assert await store.delete_many([Delete(n, 1) for n in UNICODE_NAMES]) == []
    assert await store.load_many(UNICODE_NAMES) == {}


async def test_state_survives_reopen(store: SnapshotStore, backend: Backend) -> None:
    await store.save_many([write("kept", 0, 4, n=4)])
    await store.close()
    await store.close()  # idempotent
    if backend.kind != "memory":  # closing the memory store has nothing to release
        with pytest.raises(StoreUnavailable):
            await store.load_many(["kept"])
    await store.open()  # the same object, opened again
    assert (await store.load_many(["kept"]))["kept"].version == 4
    if backend.durable:
        other = backend.make()  # a new object, as a restarted process would make
        await other.open()
        snap = (await other.load_many(["kept"]))["kept"]
        assert snap == Snapshot("kept", 4, snap.properties, snap.ext)
        assert msgspec.json.decode(snap.properties) == {"n": 4}


async def test_open_is_idempotent(store: SnapshotStore) -> None:
    await store.open()
    await store.save_many([write("x", 0, 1)])
    assert "x" in await store.load_many(["x"])
