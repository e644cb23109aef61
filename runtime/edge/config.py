"""What an operator configures for one edge server: where it listens, who may do what, limits.

Secrets never live here: a `Token` keeps only the SHA-256 digest of its secret, so a config
object can be printed, logged or compared without leaking anything.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import secrets
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec

from actors import SubjectsError
from actors._patterns import compile_pattern

RIGHTS = frozenset({"read", "write", "watch"})
LOOPBACK_NAMES = ("localhost",)


class Token(msgspec.Struct, frozen=True, kw_only=True):
    """A bearer token: its name (for logs), the SHA-256 hex digest of its secret, the subject-name
    patterns it may touch and its rights there (`read`, `write`, `watch`)."""

    name: str
    sha256: str
    subjects: tuple[str, ...] = ("*",)
    rights: frozenset[str] = RIGHTS

    def __post_init__(self) -> None:
        unknown = set(self.rights) - RIGHTS
        if unknown:
            raise ValueError(f"token {self.name!r}: unknown rights {sorted(unknown)}; "
                             f"use {sorted(RIGHTS)}")
        if len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256):
            raise ValueError(f"token {self.name!r}: sha256 must be 64 lowercase hex digits")
        if not self.subjects:
            raise ValueError(f"token {self.name!r} allows no subjects")
        for pattern in self.subjects:
            try:  # refused here, where the token can be named, rather than at startup
                compile_pattern(pattern)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"token {self.name!r}: {exc}") from None

    @classmethod
    def from_secret(cls, name: str, secret: str, *, subjects: Iterable[str] = ("*",),
                    rights: Iterable[str] = RIGHTS) -> Token:
        return cls(name=name, sha256=digest(secret), subjects=tuple(subjects),
                   rights=frozenset(rights))


class _TokenEntry(msgspec.Struct, forbid_unknown_fields=True):
    """One entry of a tokens file: the secret itself or its digest (preferred: the file then
    holds nothing a reader could replay)."""

    name: str
    secret: str | None = None
    sha256: str | None = None
    subjects: list[str] = msgspec.field(default_factory=lambda: ["*"])
    rights: list[str] = msgspec.field(default_factory=lambda: sorted(RIGHTS))


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret() -> str:
    """A fresh token secret: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def load_tokens(path: str | Path) -> tuple[Token, ...]:
    """Read a JSON tokens file: a list of `{"name", "secret" or "sha256", "subjects", "rights"}`."""
    try:
        entries = msgspec.json.decode(Path(path).read_bytes(), type=list[_TokenEntry])
    except (OSError, msgspec.DecodeError) as exc:
        raise ValueError(f"cannot read tokens file {str(path)!r}: {exc}") from None
    tokens = []
    for entry in entries:
        if (entry.secret is None) == (entry.sha256 is None):
            raise ValueError(f"token {entry.name!r}: give exactly one of secret and sha256")
        sha = entry.sha256 if entry.sha256 is not None else digest(entry.secret or "")
        tokens.append(Token(name=entry.name, sha256=sha.lower(), subjects=tuple(entry.subjects),
                            rights=frozenset(entry.rights)))
    names = [t.name for t in tokens]
    if len(set(names)) != len(names) or len({t.sha256 for t in tokens}) != len(tokens):
        raise ValueError(f"tokens file {str(path)!r} repeats a name or a secret")
    return tuple(tokens)


def save_token(path: str | Path, token: Token) -> bool:
    """Add `token`'s entry (its digest, never its secret) to the tokens file at `path`, created
    if missing; an entry of the same name is replaced (a rotation). Returns whether one was.

    The file is replaced atomically, so a server starting meanwhile reads the old file or the
    new one, and it is left readable by its owner only (0600): other entries may hold secrets.
    A file the server would refuse is refused here too, rather than rewritten."""
    path = Path(path)
    entries: list[dict[str, Any]] = []
    if path.exists():
        load_tokens(path)  # raises ValueError, naming the file, if it is not a tokens file
        entries = msgspec.json.decode(path.read_bytes(), type=list[dict[str, Any]])
    kept = [entry for entry in entries if entry["name"] != token.name]
    kept.append({"name": token.name, "sha256": token.sha256, "subjects": list(token.subjects),
                 "rights": sorted(token.rights)})
    data = msgspec.json.format(msgspec.json.encode(kept), indent=2) + b"\n"
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    return len(kept) == len(entries)


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


class InsecureBinding(SubjectsError, ValueError):
    """The edge would listen beyond this machine with nobody required to authenticate."""


class EdgeConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Settings of one edge server. Every field has a flag and an environment variable in the
    CLI (`subjects serve --help`)."""

    host: str = "127.0.0.1"
    port: int = 8000
    tokens: tuple[Token, ...] = ()
    insecure: bool = False  # allow a non-loopback host without tokens
    cors_origins: tuple[str, ...] = ()
    # Host headers accepted; empty means: loopback names without tokens (against DNS rebinding
    # of a local, unauthenticated edge), anything with tokens.
    allowed_hosts: tuple[str, ...] = ()
    max_body: int = 1 << 20  # bytes of one request body or WebSocket message
    ask_timeout: float = 10.0  # default of `?reply=true` and WebSocket asks
    max_ask_timeout: float = 60.0
    retry_after: int = 1  # seconds, in 503 answers
    ws_queue_limit: int = 1000  # messages waiting to be sent to one WebSocket client
    ws_max_errors: int = 10  # bad messages in a row before a WebSocket is closed
    ws_max_asks: int = 100  # asks one WebSocket may have pending
    # Every committed change is matched against every watch pattern: both are bounded.
    ws_max_watches: int = 100  # patterns one WebSocket may watch
    max_watches: int = 1000  # patterns watched over all WebSockets
    dedup_size: int = 100_000  # recent CloudEvents (source, id, subject) remembered
    shutdown_grace: float = 10.0  # seconds pending asks get to finish at shutdown
    # Seconds a request's headers may take from its first byte (or the connection's opening),
    # then its body from the end of its headers: past them, 408 and the connection is closed.
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    # Writes (PATCH, DELETE) answer only once their snapshot is committed, unless a request
    # says `?durable=false`: what the edge acknowledges must survive a crash.
    durable: bool = True
    access_log: bool = True

    def check(self) -> None:
        """Refuse settings that would expose the runtime: raise `InsecureBinding` or
        ValueError."""
        if not self.tokens and not self.insecure and not is_loopback(self.host):
            raise InsecureBinding(
                f"refusing to listen on {self.host!r} without authentication: configure tokens "
                "(--tokens FILE) or, if the network is trusted, pass --insecure")
        if min(self.max_body, self.ws_queue_limit, self.ws_max_errors, self.ws_max_watches,
               self.max_watches) < 1:
            raise ValueError("max_body, ws_queue_limit, ws_max_errors, ws_max_watches and "
                             "max_watches must be >= 1")
        if not (self.header_timeout > 0 and self.body_timeout > 0):
            raise ValueError("header_timeout and body_timeout must be > 0")
        if not 0 < self.ask_timeout <= self.max_ask_timeout:
            raise ValueError("ask_timeout must be > 0 and <= max_ask_timeout")
