"""Device health, the KRules quick example written for subjects.

Devices report cpu, memory and error metrics. A behaviour derives each device's `health` from
them; another reacts to health transitions, printing them and raising an alert event to the
`alerts:ops` subject when a device turns critical. Setting a metric to the value it already has
changes nothing, so it triggers nothing.

Run it: `python -m examples.device_health`. The edge server serves this module's `rt`.
"""

from __future__ import annotations

from typing import Any

from actors import PROPERTY_CHANGED, Context
from runtime import Runtime, run

METRICS = ("cpu", "mem", "errors")


def health_of(cpu: float, mem: float, errors: int) -> str:
    if cpu > 90 or mem > 95 or errors > 10:
        return "critical"
    if cpu > 70 or mem > 80 or errors > 0:
        return "warning"
    return "ok"


def install(rt: Runtime) -> None:
    """Attach the device-health behaviours to a runtime: this module's, or a test's."""
    on, when = rt.on, rt.when

    @on(PROPERTY_CHANGED, subject="device:*")
    @when(lambda ctx: ctx.property_name in METRICS)
    async def derive_health(ctx: Context) -> None:
        device = ctx.subject
        device.set("health", health_of(device.get("cpu", 0), device.get("mem", 0),
                                       device.get("errors", 0)))

    @on(PROPERTY_CHANGED, subject="device:*")
    @when(lambda ctx: ctx.property_name == "health" and ctx.old_value is not None)
    async def report_transition(ctx: Context) -> None:
        print(f"{ctx.subject.name}: {ctx.old_value} -> {ctx.new_value}")
        ctx.subject.set("transitions", lambda n: (n or 0) + 1)
        if ctx.new_value == "critical":
            await ctx.emit("device.alert.critical", "alerts:ops",
                           {"device": ctx.subject.name, "was": ctx.old_value})

    @on("device.alert.*", subject="alerts:*")
    async def collect_alert(ctx: Context) -> None:
        ctx.subject.set("count", lambda n: (n or 0) + 1)
        ctx.subject.set("last", ctx.payload)

    @on("status", subject="device:*")
    async def status(ctx: Context) -> dict[str, Any]:
        """Answer `rt.ask(device, "status")` with the device's metrics and health."""
        return {key: ctx.subject.get(key) for key in (*METRICS, "health")}


rt = Runtime()
install(rt)


async def main() -> None:
    async with rt:
        device = rt.subject("device:prod-01")
        # One turn sets all three metrics: health is derived once the batch is applied...
        await device.patch({"cpu": 35, "mem": 40, "errors": 0})
        await device.set("cpu", 75)  # ok -> warning
        await device.set("cpu", 75)  # the same value again: no event, nothing printed
        await device.set("errors", 12)  # warning -> critical, and an alert
        await device.set("errors", 0)  # critical -> warning
        await device.patch({"cpu": 20})  # warning -> ok
        await device.store()  # ...and the snapshot is written once, on demand
        print("status:", await rt.ask("device:prod-01", "status"))
        print("alerts:", await rt.subject("alerts:ops").get("count"))


if __name__ == "__main__":
    run(main())
