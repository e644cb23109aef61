"""The Redis store: snapshots in a Redis server, for fast shared state with few moving parts.

Layout: one string key per subject, `<prefix><name>` (prefix default `subjects:`), holding

    b"<version>@<writer>:<length of properties>:" + properties + ext

(`b"<version>:<length of properties>:"` when the write named no writer: the layout before
writers were recorded), and one hash for the whole prefix, `<prefix> writers` (subject names
have no spaces), holding the history of each subject that had a handover: field the subject's
key, value `"<writer>=<version> ..."`, each earlier writer and the last version it stored (see
storage._protocol).

Plain strings keep a whole batch load to one native MGET, and the version and writer at the
front let a write check both by reading only a key's first bytes (one GETRANGE) instead of its
whole state; the history is read and written only at a handover. One hash for all histories
adds one key to a batch, not one per subject (redis-py packs each argument of a call: a second
key per subject made a batch a fifth slower).

Each write batch is one Lua script call (EVALSHA; the script is sent again after a NOSCRIPT,
e.g. after a server restart), so the version checks and the writes of a batch are atomic and
cost one round trip. Versions are compared as decimal strings, never as Lua numbers (doubles),
so every 64-bit version is exact. All keys of a batch go to one script, so on Redis Cluster the
prefix must pin them to one slot with a hash tag, e.g. `{subjects}:`.

Durability is the server's configuration, not the client's: with the default (RDB snapshots
only) a Redis crash loses every write since the last snapshot. For an acknowledged `save_many`
to survive a crash, enable the append-only file:

    appendonly yes
    appendfsync always     # fsync before replying: survives a crash of Redis or of the machine
    appendfsync everysec   # fsync once a second: survives a Redis crash; a machine crash or
                           # power loss can lose about the last second of acknowledged writes

Failures that a later retry may fix (connection refused or lost, timeout, a server still loading
its data, a read-only replica after a failover) raise `StoreUnavailable`; the connection pool
reconnects on the next call. redis-py's own retries are disabled: a retried script could report
its own, already applied, write as stale. When `save_many` raises, its outcome is unknown.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ReadOnlyError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

try:
    from redis.maint_notifications import MaintNotificationsConfig
except ImportError:  # redis-py < 7 has no maintenance notifications and checks idle connections
    _CHECK_IDLE_CONNECTIONS: dict[str, Any] = {}
else:
    # redis-py 7+ skips its check for connections the server closed while idle when these
    # notifications may be on ("auto", the default), so the first call after a server restart
    # would fail. They need Redis Enterprise and RESP3 anyway.
    _CHECK_IDLE_CONNECTIONS = {"maint_notifications_config": MaintNotificationsConfig(False)}

from ._protocol import (
    WRITERS_KEPT,
    Delete,
    Snapshot,
    SnapshotRefused,
    StoreError,
    StoreUnavailable,
    Write,
    unavailable,
)

T = TypeVar("T")


class _Script:
    """A Lua script run by digest (EVALSHA); sent in full only when the server lacks it."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(self, client: aioredis.Redis, keys: list[str], args: list[Any]) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:  # a new or restarted server, or SCRIPT FLUSH
            await client.script_load(self.source)
            return await client.evalsha(self.sha, len(keys), *keys, *args)


# KEYS[i] is the i-th subject's key and KEYS[#KEYS] the histories' hash; ARGV[1] is how many
# writers a history keeps, ARGV[2i+1] the new value and ARGV[2i] the head the key must start
# with: the expected version and this write's writer as a value shows them
# ("<expected>@<writer>:", or "<expected>:" for no writer; "0" expects no key, and starts the
# subject's history afresh). A key with that head is written at once (almost every write); any
# other is read a little further: at the expected version with another writer, that writer goes
# into the history (a handover). Returns the indexes (1-based, by subject) refused. Every key is
# checked before any is written: Redis does not undo a script's writes when it fails, so a key
# of the wrong type (WRONGTYPE) fails the whole batch with nothing applied. A histories' key of
# the wrong type (not ours: someone else's key under the prefix) only goes without the records
# (pcall): a record that misses a write can make a lost reply look stale, never a stale write
# look landed.
_SAVE = _Script("""
local kept, histories, n = tonumber(ARGV[1]), KEYS[#KEYS], #KEYS - 1
local ok, previous = {}, {}
for i = 1, n do
    local key, same = KEYS[i], ARGV[2 * i]
    local head = redis.pcall('GETRANGE', key, 0, #same - 1)
    if type(head) == 'table' and head.err then
        if string.sub(head.err, 1, 9) == 'WRONGTYPE' then
            return redis.error_reply('WRONGTYPE ' .. key .. ' does not hold a subject snapshot')
        end
        return redis.error_reply(head.err)  -- anything else (an ACL, say): not the data's fault
    end
    if same == '0' then
        ok[i] = head == ''
    elseif head == same then
        ok[i] = true
    else
        local expected = string.match(same, '^%d+')
        head = redis.call('GETRANGE', key, 0, #expected + 65)  -- a writer has at most 64
        ok[i] = string.match(head, '^%d+') == expected
        previous[i] = string.match(head, '^%d+@(%w+):') or ''
    end
end

-- `writer` writes on top of `version`, stored by `previous`: the history keeps that, and drops
-- the entry of `writer`, whose latest version is now the stored one.
local function hand_over(key, previous, version, writer)
    local history = redis.pcall('HGET', histories, key)
    if type(history) == 'table' then return end  -- not a hash of ours: no record
    local entries = {}
    for w, v in string.gmatch(history or '', '(%w+)=(%d+)') do
        if w ~= writer and w ~= previous then entries[#entries + 1] = {w, v} end
    end
    if previous ~= '' then entries[#entries + 1] = {previous, version} end
    while #entries > kept do  -- drop the lowest version (one, unless `kept` was lowered)
        local lowest = 1
        for j = 2, #entries do
            if tonumber(entries[j][2]) < tonumber(entries[lowest][2]) then lowest = j end
        end
        table.remove(entries, lowest)
    end
    for j, entry in ipairs(entries) do entries[j] = entry[1] .. '=' .. entry[2] end
    if #entries > 0 then
        redis.call('HSET', histories, key, table.concat(entries, ' '))
    elseif history then
        redis.call('HDEL', histories, key)
    end
end

local refused, fresh = {}, {}
for i = 1, n do
    if ok[i] then
        local key, same = KEYS[i], ARGV[2 * i]
        redis.call('SET', key, ARGV[2 * i + 1])
        if same == '0' then
            fresh[#fresh + 1] = key
        elseif previous[i] then
            hand_over(key, previous[i], string.match(same, '^%d+'),
                      string.match(same, '@(%w+):$') or '')
        end
    else
        refused[#refused + 1] = i
    end
end
for j = 1, #fresh, 1000 do  -- one call per thousand new subjects
    redis.pcall('HDEL', histories, unpack(fresh, j, math.min(j + 999, #fresh)))
end
return refused
""")

# KEYS as for _SAVE, ARGV[1] the writer: for each subject, the head of its value ('' if none;
# long enough for its version and that writer) and the version its history keeps for the writer
# ('' if none).
_VERSIONS = _Script("""
local histories, found = KEYS[#KEYS], {}
for i = 1, #KEYS - 1 do
    local head = redis.pcall('GETRANGE', KEYS[i], 0, #ARGV[1] + 21)
    local history = redis.pcall('HGET', histories, KEYS[i])
    if type(head) ~= 'string' then head = '?' end
    if type(history) ~= 'string' then history = '' end
    found[#found + 1] = head
    found[#found + 1] = string.match(' ' .. history, ' ' .. ARGV[1] .. '=(%d+)') or ''
end
return found
""")

# KEYS as for _SAVE, ARGV[i] the expected version. A missing key is not refused.
_DELETE = _Script("""
local refused, deleted = {}, {}
for i = 1, #KEYS - 1 do
    local expected = ARGV[i]
    local head = redis.call('GETRANGE', KEYS[i], 0, #expected)
    if head == expected .. ':' or head == expected .. '@' then
        redis.call('UNLINK', KEYS[i])
        deleted[#deleted + 1] = KEYS[i]
    elseif head ~= '' then
        refused[#refused + 1] = i
    end
end
for j = 1, #deleted, 1000 do
    redis.pcall('HDEL', KEYS[#KEYS], unpack(deleted, j, math.min(j + 999, #deleted)))
end
return refused
""")

# Errors after which the same call may succeed later. redis' ConnectionError covers
# BusyLoadingError (a restarted server still loading its data).
_TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,  # includes the builtin ConnectionError and TimeoutError
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,  # connected to a replica, e.g. right after a failover
)


def _head(w: Write) -> str:
    """What the key must start with for `w` to be written without a handover (see _SAVE)."""
    if w.expected_version == 0:
        return "0"
    if w.writer:
        return f"{w.expected_version}@{w.writer}:"
    return f"{w.expected_version}:"


def _encode(w: Write) -> bytes:
    if w.writer:
        return b"%d@%b:%d:%b%b" % (w.version, w.writer.encode(), len(w.properties),
                                   w.properties, w.ext)
    return b"%d:%d:%b%b" % (w.version, len(w.properties), w.properties, w.ext)


def _decode(name: str, value: bytes) -> Snapshot:
    try:
        first = value.index(b":")
        second = value.index(b":", first + 1)
        split = second + 1 + int(value[first + 1:second])
        version = int(value[:first].partition(b"@")[0])
        return Snapshot(name, version, value[second + 1:split], value[split:])
    except ValueError:
        # Not written by this store: handed on as a snapshot no one can read, so that the
        # runtime refuses this subject alone (SnapshotCorrupt), not the whole batch.
        return Snapshot(name, 0, b"", b"")


class RedisStore:
    """Snapshots in Redis, one key per subject."""

    def __init__(self, url: str, *, prefix: str = "subjects:", timeout: float = 10.0) -> None:
        self.url = url
        self.prefix = prefix
        self.timeout = timeout  # bound on each call: connecting and the command
        parts = urlsplit(url)
        self._password = parts.password
        self._where = (
            parts.path if parts.scheme == "unix" else f"{parts.hostname}:{parts.port or 6379}"
        )
        self._client: aioredis.Redis | None = None

    def __repr__(self) -> str:
        return f"<RedisStore {self._where} prefix={self.prefix!r}>"

    def _unavailable(self, what: str, exc: BaseException) -> StoreUnavailable:
        return unavailable(f"Redis {self._where}", what, exc, self.timeout, self._password)

    async def open(self) -> None:
        if self._client is not None:
            return
        client = aioredis.Redis.from_url(
            self.url,
            socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
            retry=Retry(NoBackoff(), 0),
            **_CHECK_IDLE_CONNECTIONS,
        )
        self._client = client
        try:
            await self._call("connecting", lambda client: client.ping())
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()  # only drops sockets: never waits on the server

    async def _call(self, what: str, fn: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        """Run `fn` on the client within `timeout`, translating failures."""
        client = self._client
        if client is None:
            raise StoreUnavailable(f"{self!r} is not open")
        try:
            async with asyncio.timeout(self.timeout):
                return await fn(client)
        except _TRANSIENT as exc:
            raise self._unavailable(what, exc) from exc
        except ResponseError as exc:
            if str(exc).startswith("WRONGTYPE"):  # a key of another kind under our prefix
                raise SnapshotRefused(f"Redis {self._where}: {what} failed: {exc}") from exc
            raise StoreError(f"Redis {self._where}: {what} failed: {exc}") from exc
        except RedisError as exc:
            raise StoreError(f"Redis {self._where}: {what} failed: {exc}") from exc

    async def ping(self) -> None:
        await self._call("ping", lambda client: client.ping())

    async def load_many(self, names: Sequence[str]) -> dict[str, Snapshot]:
        if not names:
            return {}
        prefix = self.prefix
        values: list[Any] = await self._call(
            "load", lambda client: client.mget([prefix + name for name in names])
        )
        return {
            name: _decode(name, value)
            for name, value in zip(names, values, strict=True)
            if value is not None
        }

    def _keys(self, names: Iterable[str]) -> list[str]:
        """The subjects' keys, then the histories' hash (a space never occurs in a name)."""
        prefix = self.prefix
        return [*(prefix + name for name in names), prefix + " writers"]

    async def save_many(self, writes: Sequence[Write]) -> list[str]:
        if not writes:
            return []
        keys = self._keys(w.name for w in writes)
        args: list[Any] = [WRITERS_KEPT]
        for w in writes:
            args += (_head(w), _encode(w))
        refused: list[int] = await self._call(
            "save", lambda client: _SAVE(client, keys, args)
        )
        return [writes[i - 1].name for i in refused]

    async def versions(self, names: Sequence[str], writer: str) -> dict[str, tuple[int, int]]:
        if not names:
            return {}
        keys = self._keys(names)
        found: list[bytes] = await self._call(
            "versions", lambda client: _VERSIONS(client, keys, [writer])
        )
        ours = writer.encode()
        versions = {}
        for name, head, mine in zip(names, found[::2], found[1::2], strict=True):
            if head:
                first, colon, _ = head.partition(b":")
                stored, _, last = first.partition(b"@")  # the writer of the stored version
                version = int(stored) if stored.isdigit() else 0
                versions[name] = (version, version if colon and last == ours else
                                  int(mine) if mine else 0)
        return versions

    async def delete_many(self, deletes: Sequence[Delete]) -> list[str]:
        if not deletes:
            return []
        keys = self._keys(d.name for d in deletes)
        args: list[Any] = [str(d.expected_version) for d in deletes]
        refused: list[int] = await self._call(
            "delete", lambda client: _DELETE(client, keys, args)
        )
        return [deletes[i - 1].name for i in refused]
