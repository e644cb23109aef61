"""Who is calling and what they may do: bearer tokens, each with rights on subject patterns.

Presented secrets are hashed and looked up by digest, so the edge never holds or logs them.
Without tokens configured everyone may do everything; that is only allowed on loopback
(`EdgeConfig.check`), where the Host header is checked instead, against DNS rebinding.
"""

from __future__ import annotations

import hashlib

from actors._patterns import Matcher, compile_pattern

from .config import RIGHTS, EdgeConfig, is_loopback
from .errors import EdgeError


class Principal:
    """An authenticated caller: a token's name and, per right, the subject patterns it covers."""

    __slots__ = ("_everywhere", "_matchers", "name")

    def __init__(self, name: str, rights: dict[str, tuple[str, ...]]) -> None:
        self.name = name
        # Rights held on every subject need no pattern matching per request.
        self._everywhere = frozenset(r for r, patterns in rights.items() if "*" in patterns)
        self._matchers: dict[str, tuple[Matcher, ...]] = {
            right: tuple(compile_pattern(p) for p in patterns)
            for right, patterns in rights.items()}

    def __repr__(self) -> str:
        return f"<Principal {self.name!r}>"

    def has(self, right: str) -> bool:
        """Whether it holds `right` on some subject."""
        return right in self._matchers

    def allows(self, right: str, subject: str) -> bool:
        if right in self._everywhere:
            return True
        return any(match(subject) for match in self._matchers.get(right, ()))

    def require(self, right: str, subject: str) -> None:
        if not self.allows(right, subject):
            raise EdgeError(403, "forbidden",
                            f"token {self.name!r} has no {right} right on {subject!r}",
                            client_fault=True)


ANONYMOUS = Principal("anonymous", {right: ("*",) for right in RIGHTS})


class Authenticator:
    def __init__(self, config: EdgeConfig) -> None:
        self.required = bool(config.tokens)
        self._by_digest = {
            token.sha256: Principal(token.name, {r: token.subjects for r in token.rights})
            for token in config.tokens}
        # An unauthenticated edge on loopback answers only to loopback host names; with tokens
        # (or --insecure) any Host is fine unless the operator lists them.
        hosts = config.allowed_hosts
        self._any_host = "*" in hosts or (not hosts and (self.required or config.insecure))
        self._hosts = frozenset(h.lower() for h in hosts)
        self._seen_hosts: dict[bytes, bool] = {}

    def principal(self, authorization: str | None) -> Principal:
        """The caller named by an `Authorization: Bearer <secret>` header value."""
        if not self.required:
            return ANONYMOUS
        if authorization is None:
            raise EdgeError(401, "unauthorized", "missing bearer token", client_fault=True)
        scheme, _, secret = authorization.partition(" ")
        found = None
        if scheme.lower() == "bearer" and secret:
            found = self._by_digest.get(hashlib.sha256(secret.strip().encode()).hexdigest())
        if found is None:
            raise EdgeError(401, "unauthorized", "invalid bearer token", client_fault=True)
        return found

    def host_allowed(self, host_header: bytes | None) -> bool:
        if self._any_host:
            return True
        if not host_header:
            return False
        known = self._seen_hosts.get(host_header)
        if known is None:
            if len(self._seen_hosts) > 1000:  # bounded: Host is chosen by the client
                self._seen_hosts.clear()
            known = self._seen_hosts[host_header] = self._host_ok(
                host_header.decode("latin-1").lower())
        return known

    def _host_ok(self, host: str) -> bool:
        if host.startswith("["):  # [::1]:8000
            host = host[:host.find("]") + 1]
        elif host.count(":") == 1:
            host = host.partition(":")[0]
        return host in self._hosts or is_loopback(host)
