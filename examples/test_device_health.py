"""Property-based test of the device-health example, on the testing kit's state machine.

Hypothesis sends any sequence of metric updates to a few devices (several at a time, their turns
interleaved every which way), crashes and passivates actors and lets time pass. After every step:
each device's health is the rule applied to its latest metrics, and the ops alerts hold exactly
one alert for each transition into critical (a transition: a change from a known health; a
device's first health is not one), in order per device.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from examples.device_health import METRICS, health_of, install
from runtime.testing import BehaviourMachine, Message, Patch, Set, SimRuntime, patches, sets

DEVICES = ["device:a", "device:b", "device:c"]
readings = st.integers(0, 100) | st.floats(0, 100, allow_nan=False)


class DeviceHealth(BehaviourMachine):
    messages = sets(DEVICES, METRICS, readings) | patches(DEVICES, METRICS, readings)

    def __init__(self) -> None:
        super().__init__()
        self.metrics: dict[str, dict[str, Any]] = {d: {} for d in DEVICES}
        self.health: dict[str, str | None] = {d: None for d in DEVICES}
        self.alerts: dict[str, list[str]] = {d: [] for d in DEVICES}  # the health before each

    def install(self, rt: SimRuntime) -> None:
        install(rt)

    def apply(self, message: Message) -> None:
        assert isinstance(message, Set | Patch)
        metrics = self.metrics[message.subject]
        metrics.update({message.prop: message.value} if isinstance(message, Set)
                       else message.values)
        health = health_of(metrics.get("cpu", 0), metrics.get("mem", 0),
                           metrics.get("errors", 0))
        before = self.health[message.subject]
        if before is not None and before != health == "critical":
            self.alerts[message.subject].append(before)
        self.health[message.subject] = health

    async def check(self, rt: SimRuntime) -> None:
        alerts = rt.events(type="device.alert.critical", subject="alerts:ops")
        for device in DEVICES:
            assert await rt.subject(device).get("health") == self.health[device], device
            # Per device, in order: alerts of different devices may arrive in any order.
            assert [e.payload["was"] for e in alerts if e.payload["device"] == device] == \
                self.alerts[device], device
        total = sum(len(a) for a in self.alerts.values())
        assert await rt.subject("alerts:ops").get("count") == (total or None)


TestDeviceHealth = DeviceHealth.TestCase
TestDeviceHealth.settings = settings(max_examples=100, stateful_step_count=25, deadline=None,
                                     suppress_health_check=[HealthCheck.too_slow])
