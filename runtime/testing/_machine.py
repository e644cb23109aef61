"""A hypothesis state machine for behaviours: you state the behaviours and a model of what they
should do; hypothesis sends random messages, chooses how their turns interleave, crashes and
passivates actors and moves virtual time, and compares the runtime with the model after every
step. A failure is shrunk to a short sequence of steps and the interleaving that breaks it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from typing import Any, ClassVar, TypeVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from runtime import DeadLetter, Policy

from ._loops import new_event_loop
from ._messages import Crash, InjectedCrash, Message
from ._sim import SimRuntime

T = TypeVar("T")


class BehaviourMachine(RuleBasedStateMachine):
    """Subclass it and provide:

    - `install(rt)`: attach your behaviours to a runtime (a fresh one per test case);
    - `messages`: a class attribute, the strategy of `Message`s to send (see `sets`, `tells`);
    - `apply(message)`: update your model as if `message` was handled;
    - `async check(rt)`: assert that the runtime agrees with the model;
    - optionally `loop = "uvloop"`, to run on uvloop rather than asyncio's default loop.

    Each step sends a few messages together (each from its own sender: messages to one subject
    arrive in the order drawn, while turns of different subjects interleave as hypothesis
    chooses), runs until every mailbox is empty, then applies the messages to the model in
    order. Other steps crash an actor (a turn fails and it restarts from its snapshot),
    passivate actors, or let virtual time pass. After every step, no turn may have failed
    except on purpose, and `check` must pass. Run it with `TestMine = Mine.TestCase`.
    """

    messages: ClassVar[st.SearchStrategy[Message]]
    max_batch: ClassVar[int] = 4  # most messages one step sends together
    passivate_after: ClassVar[float] = 60.0
    runtime_options: ClassVar[dict[str, Any]] = {}  # more options for the SimRuntime
    loop: ClassVar[str] = "asyncio"  # the kind of event loop it runs on: "asyncio" or "uvloop"

    def __init__(self) -> None:
        super().__init__()
        # A loop of the kit's, whatever the policy: virtual time needs one that can tell when
        # it is quiet.
        self._loop = new_event_loop(self.loop)
        self._data: st.DataObject | None = None
        self._draw_failed: BaseException | None = None
        options: dict[str, Any] = {
            "passivate_after": self.passivate_after,
            # Crashes are injected at will: the restart intensity must never stop an actor.
            "root": Policy(max_restarts=1_000_000, within=1.0),
            **self.runtime_options,
        }
        self.rt = SimRuntime(choose=self._choose, **options)
        self.install(self.rt)
        self.run(self.rt.start())

    # -- what a subclass provides -------------------------------------------------------------

    def install(self, rt: SimRuntime) -> None:
        """Attach the behaviours under test to `rt`."""
        raise NotImplementedError

    def apply(self, message: Message) -> None:
        """Update the model: `message` has been handled."""
        raise NotImplementedError

    async def check(self, rt: SimRuntime) -> None:
        """Assert that the runtime's subjects and events agree with the model."""
        raise NotImplementedError

    def failure_expected(self, letter: DeadLetter) -> bool:
        """Whether a failed turn is part of the behaviour (by default none is, except the
        crashes this machine injects)."""
        return False

    # -- steps (hypothesis orders rules by name and shrinks towards the first: `send`) --------

    @rule(data=st.data())
    def send(self, data: st.DataObject) -> None:
        """A few messages, sent together."""
        batch = data.draw(st.lists(self.messages, min_size=1, max_size=self.max_batch),
                          label="messages")
        self.step(*batch, data=data)

    @precondition(lambda self: self.rt.live_subjects())
    @rule(data=st.data())
    def send_with_crash(self, data: st.DataObject) -> None:
        """A crash of an active subject, among other messages: the ones sent before it wait
        for its restart."""
        victim = data.draw(st.sampled_from(self.rt.live_subjects()), label="crash")
        batch = data.draw(st.lists(self.messages, max_size=self.max_batch - 1),
                          label="messages")
        batch.insert(data.draw(st.integers(0, len(batch)), label="crash position"),
                     Crash(victim))
        self.step(*batch, data=data)

    @precondition(lambda self: self.rt.live_subjects())
    @rule(data=st.data())
    def store_and_passivate(self, data: st.DataObject) -> None:
        """Some active subjects are stored and dropped: their next message reactivates them."""
        names = data.draw(st.lists(st.sampled_from(self.rt.live_subjects()), min_size=1,
                                   unique=True), label="passivate")
        self.run(self._passivate(names), data)

    async def _passivate(self, names: list[str]) -> None:
        await self.rt.passivate(*names)
        await self.rt.run_until_idle()  # behaviours may react to `subject-passivated`

    @rule(data=st.data())
    def time_passes(self, data: st.DataObject) -> None:
        """Virtual time: passivation sweeps, and whatever else the behaviours' runtime times."""
        seconds = data.draw(st.integers(1, int(2 * self.passivate_after)), label="seconds")
        self.run(self._advance(seconds), data)

    async def _advance(self, seconds: float) -> None:
        await self.rt.clock.advance(seconds)
        await self.rt.run_until_idle()

    @invariant()
    def agrees_with_the_model(self) -> None:
        self.run(self._compare())

    async def _compare(self) -> None:
        for letter in self.rt.dead_letters:
            if not isinstance(letter.error, InjectedCrash) and not self.failure_expected(letter):
                raise AssertionError(
                    f"a turn failed: {letter.kind} {letter.name!r} to {letter.subject!r}: "
                    f"{letter.reason}") from letter.error
        await self.check(self.rt)

    def teardown(self) -> None:
        try:
            self.run(self.rt.close())
        finally:
            self._loop.close()

    # -- driving the runtime ------------------------------------------------------------------

    def step(self, *messages: Message, data: st.DataObject | None = None) -> list[Any]:
        """Send `messages` together, run until every mailbox is empty (turns interleaved as
        `data` chooses, else first-in first-out), then apply them to the model in order (a
        `Crash` changes nothing). Returns what each send returned. For rules of your own."""
        results = self.run(self._send_all(messages), data)
        for message in messages:
            if not isinstance(message, Crash):
                self.apply(message)
        return results

    def run(self, coro: Coroutine[Any, Any, T], data: st.DataObject | None = None) -> T:
        """Run `coro` on this machine's event loop; with `data`, hypothesis chooses the
        interleaving of the turns it causes."""
        self._data = data
        try:
            result = self._loop.run_until_complete(coro)
        finally:
            self._data = None
        failed, self._draw_failed = self._draw_failed, None
        if failed is not None:
            raise failed
        return result

    async def _send_all(self, messages: Sequence[Message]) -> list[Any]:
        sending = asyncio.gather(*(m.send(self.rt) for m in messages), return_exceptions=True)
        await self.rt.run_until_idle()
        if not sending.done():
            sending.cancel()
            raise AssertionError(f"{messages} were not all handled once the runtime was idle")
        results = sending.result()
        for message, result in zip(messages, results, strict=True):
            if isinstance(result, BaseException):
                raise AssertionError(f"sending {message!r} failed: {result!r}") from result
        return results

    def _choose(self, ready: Sequence[str]) -> int:
        if self._data is None or self._draw_failed is not None:
            return 0
        try:
            return self._data.draw(st.integers(0, len(ready) - 1),
                                   label=f"next turn among {list(ready)}")
        except BaseException as exc:
            # Hypothesis ran out of data, say. It must learn that from the rule, not from deep
            # inside a turn; meanwhile the run goes on first-in first-out.
            self._draw_failed = exc
            return 0
