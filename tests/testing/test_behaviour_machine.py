"""The state machine catches broken behaviours and shrinks each to a short counterexample: a
read-modify-write split over two turns, a behaviour that relies on an order across subjects the
runtime does not promise, and in-memory state that does not survive passivation or a restart. A
correct behaviour passes."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test

from actors import PROPERTY_CHANGED, SUBJECT_PASSIVATED, SUBJECT_RESTARTED
from runtime.testing import (
    LOOP_KINDS,
    BehaviourMachine,
    CountingLoop,
    Message,
    Set,
    SimRuntime,
    Tell,
    sets,
    tells,
)

# Deterministic (derandomize) and without the slow explain phase: these tests find and shrink
# the same counterexample on every run.
SEARCH = settings(max_examples=200, stateful_step_count=10, deadline=None, database=None,
                  derandomize=True, suppress_health_check=list(HealthCheck),
                  phases=[Phase.generate, Phase.shrink])


def counterexample(machine):
    """Run the machine; return the steps and draws of its shrunk counterexample, one a line."""
    with pytest.raises(AssertionError) as failure:
        run_state_machine_as_test(machine, settings=SEARCH)
    report = getattr(failure.value, "__notes__", [])
    assert report and report[0].startswith("Failing test case"), report
    lines: list[str] = []
    for line in "\n".join(report).splitlines():
        if line.startswith(" "):  # a long draw, printed over several lines
            lines[-1] += " " + line.strip()
        else:
            lines.append(line)
    return [line for line in lines if line.startswith(("state.", "Draw"))
            and "agrees_with_the_model" not in line and "teardown" not in line
            and "Machine()" not in line and " = " not in line]


def on(loop, machine):
    """The machine, running on the kind of event loop `loop`: every test here runs on both."""
    return type(machine.__name__, (machine,), {"loop": loop})


def rules(steps):
    return [step.split("(")[0] for step in steps if step.startswith("state.")]


class Accounts(BehaviourMachine):
    """Deposits to a few accounts; the model: each balance is the sum of its deposits."""

    messages = tells(["account:1", "account:2"], "deposit", st.integers(1, 5))

    def __init__(self):
        super().__init__()
        self.balances = {}

    def install(self, rt: SimRuntime) -> None:
        @rt.on("deposit")
        async def deposit(ctx):
            ctx.subject.set("balance", lambda b: (b or 0) + ctx.payload)

    def apply(self, message: Message) -> None:
        assert isinstance(message, Tell)
        self.balances[message.subject] = self.balances.get(message.subject, 0) + message.payload

    async def check(self, rt: SimRuntime) -> None:
        for name, balance in self.balances.items():
            assert await rt.subject(name).get("balance") == balance, name


class SplitReadModifyWrite(Accounts):
    def install(self, rt: SimRuntime) -> None:
        @rt.on("deposit")
        async def deposit(ctx):  # reads here, writes in a later turn: deposits in between vanish
            balance = ctx.subject.get("balance", 0)
            await ctx.emit("commit", ctx.subject, balance + ctx.payload)

        @rt.on("commit")
        async def commit(ctx):
            ctx.subject.set("balance", ctx.payload)


@pytest.mark.parametrize("loop", LOOP_KINDS)
def test_a_correct_behaviour_passes(loop):
    run_state_machine_as_test(on(loop, Accounts), settings=SEARCH)


@pytest.mark.parametrize("loop", LOOP_KINDS)
def test_a_read_modify_write_split_over_two_turns_is_caught_and_shrunk(loop):
    steps = counterexample(on(loop, SplitReadModifyWrite))
    assert steps == [
        "Draw 1 (messages): [Tell('account:1', 'deposit', 1), Tell('account:1', 'deposit', 1)]",
        "state.send(data=data(...))",
    ]


class Dashboard(BehaviourMachine):
    """Devices forward each new reading to a dashboard. Broken: the model (and whoever wrote
    it) assumes the dashboard shows the reading sent last, but readings of different devices
    reach it in whatever order their turns run."""

    messages = sets(["device:a", "device:b"], "reading", st.integers(0, 3))

    def __init__(self):
        super().__init__()
        self.readings = {}
        self.latest = None

    def install(self, rt: SimRuntime) -> None:
        @rt.on(PROPERTY_CHANGED, subject="device:*")
        async def forward(ctx):
            await ctx.emit("reading", "dashboard:1", ctx.new_value)

        @rt.on("reading", subject="dashboard:*")
        async def show(ctx):
            ctx.subject.set("latest", ctx.payload)

    def apply(self, message: Message) -> None:
        assert isinstance(message, Set)
        if self.readings.get(message.subject) != message.value:
            self.readings[message.subject] = message.value
            self.latest = message.value

    async def check(self, rt: SimRuntime) -> None:
        assert await rt.subject("dashboard:1").get("latest") == self.latest


@pytest.mark.parametrize("loop", LOOP_KINDS)
def test_an_order_across_subjects_is_not_promised_and_the_interleaving_is_shown(loop):
    steps = counterexample(on(loop, Dashboard))
    assert rules(steps) == ["state.send"]
    messages, *interleaving = steps[:-1]
    assert "device:a" in messages and "device:b" in messages
    assert interleaving and all("next turn among" in draw for draw in interleaving)


class Sequencer(BehaviourMachine):
    """Numbers the messages each subject gets. Broken: the count lives in Python memory,
    dropped when the subject is passivated (or, in `Restarting`, reset when it restarts)."""

    messages = tells(["seq:1", "seq:2"], "next")
    forget_on = SUBJECT_PASSIVATED

    def __init__(self):
        super().__init__()
        self.counts = {}

    def install(self, rt: SimRuntime) -> None:
        memory = {}

        @rt.on("next")
        async def number(ctx):
            memory[ctx.subject.name] = memory.get(ctx.subject.name, 0) + 1
            ctx.subject.set("number", memory[ctx.subject.name])

        @rt.on(self.forget_on, subject="supervisor:*")
        async def forget(ctx):
            memory.pop(ctx.payload["subject"], None)

    def apply(self, message: Message) -> None:
        self.counts[message.subject] = self.counts.get(message.subject, 0) + 1

    async def check(self, rt: SimRuntime) -> None:
        for name, count in self.counts.items():
            assert await rt.subject(name).get("number") == count, name


class Restarting(Sequencer):
    forget_on = SUBJECT_RESTARTED


@pytest.mark.parametrize("loop", LOOP_KINDS)
def test_state_that_does_not_survive_passivation_is_caught(loop):
    steps = counterexample(on(loop, Sequencer))
    assert rules(steps) == ["state.send", "state.store_and_passivate", "state.send"], steps


@pytest.mark.parametrize("loop", LOOP_KINDS)
def test_state_that_does_not_survive_a_restart_is_caught(loop):
    steps = counterexample(on(loop, Restarting))
    assert rules(steps) == ["state.send", "state.send_with_crash", "state.send"], steps


@pytest.mark.parametrize("loop", LOOP_KINDS)
def test_a_failed_draw_inside_a_turn_surfaces_from_the_step(loop):
    class OutOfData(BaseException):
        pass

    class NoData:
        def draw(self, strategy, label=None):
            raise OutOfData

    machine = on(loop, Accounts)()
    try:
        with pytest.raises(OutOfData):  # the first choice of the next turn fails; the step ends
            machine.step(Tell("account:1", "deposit", 1), Tell("account:2", "deposit", 2),
                         data=NoData())
    finally:
        machine.teardown()


@pytest.mark.parametrize("loop", LOOP_KINDS)
def test_the_machine_runs_on_the_kind_of_loop_it_names(loop):
    uvloop = pytest.importorskip("uvloop")
    seen = set()

    class Watching(Accounts):
        async def check(self, rt):
            seen.add(type(asyncio.get_running_loop()))
            await super().check(rt)

    run_state_machine_as_test(on(loop, Watching), settings=settings(SEARCH, max_examples=3))
    [kind] = seen
    assert issubclass(kind, CountingLoop) and issubclass(kind, uvloop.Loop) == (loop == "uvloop")
