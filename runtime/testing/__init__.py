"""The testing kit: test behaviours on a deterministic runtime, in virtual time, with hypothesis.

- `SimRuntime`: a runtime for tests (in-memory store, `VirtualClock`, every event recorded,
  optionally a seeded or hypothesis-chosen interleaving of turns). The pytest fixture `runtime`
  (plugin `runtime.testing.plugin`, registered as `subjects`) gives a fresh one per test.
- Messages as values (`Set`, `Delete`, `Patch`, `Tell`, `Crash`) and hypothesis strategies for
  them, for subject names and for property values.
- `BehaviourMachine`: a hypothesis state machine comparing behaviours with a model.
- `new_event_loop(kind)`: the event loops all of this runs on, asyncio's default one or uvloop,
  counting their pending callbacks (`CountingLoop`) so that the kit knows when nothing can run
  until time passes.
"""

from ._clock import VirtualClock
from ._loops import LOOP_KINDS, CountingLoop, new_event_loop
from ._machine import BehaviourMachine
from ._messages import Crash, Delete, InjectedCrash, Message, Patch, Set, Tell
from ._quiet import settle
from ._recorder import EventRecorder
from ._scheduling import Chooser
from ._sim import SimRuntime
from ._strategies import (
    crashes,
    deletes,
    message_sequences,
    patches,
    property_values,
    sets,
    subject_names,
    tells,
)

__all__ = [
    "LOOP_KINDS",
    "BehaviourMachine",
    "Chooser",
    "CountingLoop",
    "Crash",
    "Delete",
    "EventRecorder",
    "InjectedCrash",
    "Message",
    "Patch",
    "Set",
    "SimRuntime",
    "Tell",
    "VirtualClock",
    "crashes",
    "deletes",
    "message_sequences",
    "new_event_loop",
    "patches",
    "property_values",
    "sets",
    "settle",
    "subject_names",
    "tells",
]
