"""The snapshot-store protocol: what the runtime's persistence pipeline needs from a database.

Designed for batched network stores: every call takes or returns many subjects, so a backend can
serve a whole batch in one round trip. State travels as JSON bytes, encoded once by the runtime
at the moment the snapshot is taken; a store never interprets it beyond storing it (PostgreSQL
keeps it as JSONB so that users can query it).

Versions make writes safe between runtimes: each write names the version it was based on
(`expected_version`, 0 for a subject the store has never seen) and the store refuses it when
the stored version differs. A refused write is reported, never applied.

Writers make lost replies safe: each write names its writer (one id per runtime), and the store
records, per subject, the writer of its stored version and, for up to WRITERS_KEPT writers before
it, the last version each stored before another took over. A writer whose retry is refused
learns from it whether its earlier attempt landed (even under another writer's later version) or
never did. Almost every write is by the writer of the version it replaces: it only stores its
id again, and the history changes only at a handover.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import msgspec

from actors import SubjectsError

# Earlier writers a subject's history keeps, besides the writer of its stored version; at a
# handover past that, the one with the lowest version is dropped.
WRITERS_KEPT = 16


class Snapshot(msgspec.Struct, frozen=True, gc=False):
    """One subject as stored: its version and its state as JSON objects."""

    name: str
    version: int
    properties: bytes  # a JSON object
    ext: bytes = b"{}"  # a JSON object: extended properties


class Write(msgspec.Struct, frozen=True, gc=False):
    """A snapshot to store, valid only if the stored version is still `expected_version`.
    `writer` (ASCII letters and digits, at most 64; empty for none) is recorded as the writer of
    `version`; if it is not the writer of `expected_version`, that one goes into the subject's
    history. A write that creates the subject (expected 0) starts its record afresh."""

    name: str
    expected_version: int
    version: int
    properties: bytes
    ext: bytes = b"{}"
    writer: str = ""


def by_writer(writes: Sequence[Write]) -> dict[str, list[Write]]:
    """The writes of a batch by writer: a store can pass the writer once per group, not once
    per row (a runtime's batches are one group)."""
    groups: dict[str, list[Write]] = {}
    for w in writes:
        groups.setdefault(w.writer, []).append(w)
    return groups


class Delete(msgspec.Struct, frozen=True, gc=False):
    name: str
    expected_version: int


class StoreError(SubjectsError):
    """A store failed to do what was asked."""


class StoreUnavailable(StoreError):
    """The store cannot be reached or failed transiently; the same call may succeed later."""


class SnapshotCorrupt(StoreError):
    """A stored snapshot cannot be read (its state is not a JSON object): that subject cannot be
    activated until the store is repaired. Other subjects are not affected."""


class SnapshotRefused(StoreError):
    """The store refused a batch for what a snapshot in it holds (a value it cannot keep, a size
    over its limits): writing the same snapshots again fails again. The runtime splits the batch
    to find the snapshots at fault, so that they do not hold back the others. `subjects` names
    the subjects whose changes were discarded, when the runtime knows them (`flush()`)."""

    subjects: tuple[str, ...] = ()


def unavailable(server: str, what: str, exc: BaseException, timeout: float,
                password: str | None) -> StoreUnavailable:
    """The error for a network store's failed call: what failed and why, never the password."""
    if isinstance(exc, TimeoutError) and not str(exc):
        reason = f"no answer within {timeout:g} s"
    else:
        reason = f"{type(exc).__name__}: {exc}"
    if password:
        reason = reason.replace(password, "***")
    return StoreUnavailable(f"{server}: {what} failed: {reason}")


@runtime_checkable
class SnapshotStore(Protocol):
    """A place where snapshots live. Each method is one batch; implementations are async.

    A store may also have an int attribute `write_concurrency`: how many `save_many` batches the
    runtime may have in flight at once (default 1). The runtime never puts one subject in two
    batches in flight.
    """

    async def open(self) -> None:
        """Connect and create the schema if needed."""

    async def close(self) -> None:
        """Release connections. Idempotent."""

    async def ping(self) -> None:
        """Raise `StoreUnavailable` unless the store can serve requests now."""

    async def load_many(self, names: Sequence[str]) -> dict[str, Snapshot]:
        """The stored snapshots of those names that exist."""

    async def save_many(self, writes: Sequence[Write]) -> list[str]:
        """Apply each write whose expected version matches; return the names refused as stale.
        The accepted writes are durable (committed) when this returns. `SnapshotRefused` if the
        content of a write is refused (then none is applied)."""

    async def versions(self, names: Sequence[str], writer: str) -> dict[str, tuple[int, int]]:
        """For each of those subjects the store holds: its stored version, and the latest
        version of it that `writer` stored (0 if none is recorded)."""

    async def delete_many(self, deletes: Sequence[Delete]) -> list[str]:
        """Delete each subject whose stored version matches, and its record of writers; return
        the names refused."""
