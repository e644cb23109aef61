"""Who waits on whom: the wait-for graph of turns suspended on calls (asks, gets) to subjects.

Each actor runs one turn at a time, and a call is a message that waits in its target's mailbox
behind the target's running turn. So an edge X -> Y ("X's running turn waits on Y's mailbox")
that closes a cycle is a deadlock: no turn in the cycle can end before the next one does. An
ask's chain (`Message.chain`) finds the cycles within one chain of nested asks; this graph finds
those between separate chains too (A's turn asks B while B's turn, started by another message,
asks A), and the call that would close the cycle fails at once with `AskCycleError` instead of
every turn in it waiting out its timeout.

Nodes are subject names: a restarted or a passivated-then-reactivated actor is the same subject
(and one with a turn running is never passivated). A subject's edges belong to its running
turn and count only while that turn runs: a call left waiting after its turn ended (the other
half of a `gather` that failed, a task a handler did not wait for) holds no mailbox, so it
closes no deadlock. Edges are counted (a turn may wait on several calls at once, even to one
subject), and each is dropped when its call ends, however it ends. Calls from outside any turn
wait on nobody's behalf and never enter the graph.
"""

from __future__ import annotations

from typing import Protocol

from ._errors import AskCycleError


class Waiter(Protocol):
    """What the graph needs of a turn."""

    @property
    def name(self) -> str: ...

    @property
    def running(self) -> bool: ...


class _Waits:
    """The calls one turn waits on: {target: how many}."""

    __slots__ = ("on", "turn")

    def __init__(self, turn: Waiter) -> None:
        self.turn = turn
        self.on: dict[str, int] = {}


Wait = tuple[str, _Waits, str]  # what `done` takes back: (waiter's name, its waits, target)


class WaitGraph:
    """Counted edges X -> Y while X's running turn waits on calls to Y."""

    __slots__ = ("edges",)

    def __init__(self) -> None:
        self.edges: dict[str, _Waits] = {}  # by waiting subject: its turn's (or a past turn's)

    def waiting(self) -> int:
        """How many calls of running turns wait (each counted once)."""
        return sum(sum(w.on.values()) for w in self.edges.values() if w.turn.running)

    def wait(self, turn: Waiter, target: str) -> Wait | None:
        """Record that `turn` now waits on a call to `target`; raise `AskCycleError` instead if
        `target` already waits, through the edges, on the turn's subject (or is it). None for a
        turn that has ended (a call from a task it left running holds no mailbox). Costs the
        paths out of `target`: one path, unless some turn waits on several subjects at once."""
        if not turn.running:
            return None
        name = turn.name
        path = self._path(target, name)
        if path is not None:
            raise AskCycleError(path, target)
        waits = self.edges.get(name)
        if waits is None or waits.turn is not turn:  # none yet, or an ended turn's: replaced
            self.edges[name] = waits = _Waits(turn)
        on = waits.on
        on[target] = on.get(target, 0) + 1
        return name, waits, target

    def done(self, wait: Wait) -> None:
        """The call ended (reply, error, timeout or cancellation): drop its edge."""
        name, waits, target = wait
        on = waits.on
        left = on[target] - 1
        if left:
            on[target] = left
            return
        del on[target]
        if not on and self.edges.get(name) is waits:
            del self.edges[name]

    def _path(self, start: str, goal: str) -> tuple[str, ...] | None:
        """The subjects from `start` to `goal` along live edges (both included), or None."""
        if start == goal:
            return (start,)
        edges = self.edges
        if start not in edges:
            return None  # the usual case: the target's turn waits on nobody
        came_from = {start: start}
        todo = [start]
        while todo:
            node = todo.pop()
            waits = edges.get(node)
            if waits is None or not waits.turn.running:
                continue
            for nxt in waits.on:
                if nxt in came_from:
                    continue
                came_from[nxt] = node
                if nxt == goal:
                    path = [goal]
                    while node != start:
                        path.append(node)
                        node = came_from[node]
                    path.append(start)
                    return tuple(reversed(path))
                todo.append(nxt)
        return None
