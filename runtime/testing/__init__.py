"""The testing kit: test behaviours on a deterministic runtime, in virtual time, with hypothesis.

- `SimRuntime`: a runtime for tests (in-memory store, `VirtualClock`, every event recorded,
  optionally a seeded or hypothesis-chosen interleaving of turns). The pytest fixture `runtime`
  (plugin `runtime.testing.plugin`, registered as `subjects`) gives a fresh one per test.
- Messages as values (`Set`, `Delete`, `Patch`, `Tell`, `Crash`) and hypothesis strategies for
  them, for subject names and for property values.
- `BehaviourMachine`: a hypothesis state machine comparing behaviours with a model.
"""

from ._clock import VirtualClock
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
    "BehaviourMachine",
    "Chooser",
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
    "patches",
    "property_values",
    "sets",
    "settle",
    "subject_names",
    "tells",
]
