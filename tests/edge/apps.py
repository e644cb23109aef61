"""The application the edge tests serve: a few behaviours with observable effects, and one
payload schema. `make_edge()` builds a fresh one per test; `edge` is served by the CLI tests."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from actors import PROPERTY_CHANGED
from runtime import Runtime
from runtime.edge import Edge


class Reboot(msgspec.Struct):
    delay: int
    reason: str = "unspecified"


class GatedRuntime(Runtime):
    """A runtime with the gate that `blocked` handlers wait for (a subclass, not an attribute set
    on a `Runtime`: the compiled build's `Runtime` has no `__dict__`)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.gate = asyncio.Event()


class Note(msgspec.Struct):
    """Declared for every subject: its own path in the OpenAPI document describes it exactly."""
    text: str
    tags: list[str] = []


def make_edge(**runtime_options: Any) -> Edge:
    rt = GatedRuntime(passivate_after=None, **runtime_options)
    gate = rt.gate

    @rt.on("count", subject="*")
    async def count(ctx):
        ctx.subject.set("n", lambda n: (n or 0) + (ctx.payload or 1))

    @rt.on("record", subject="rec:*")
    async def record(ctx):
        ctx.subject.set("seen", lambda seen: (seen or 0) + 1)

    @rt.on("echo")
    async def echo(ctx):
        return {"subject": ctx.subject.name, "payload": ctx.payload}

    @rt.on("sleep")
    async def sleep(ctx):
        await asyncio.sleep(ctx.payload)
        return "slept"

    @rt.on("blocked")
    async def blocked(ctx):
        await gate.wait()
        ctx.subject.set("released", True)

    @rt.on("fail")
    async def fail(ctx):
        raise ValueError("internal detail: password=hunter2")

    @rt.on("reboot", subject="device:*")
    async def reboot(ctx):
        ctx.subject.set("rebooting", ctx.payload)
        return ctx.payload

    @rt.on(PROPERTY_CHANGED, subject="fragile:*")
    async def fragile(ctx):
        if ctx.new_value == "boom":
            raise ValueError("refuses boom")

    edge = Edge(rt)
    edge.schema("reboot", Reboot, subject="device:*")
    edge.schema("note", Note)
    return edge


edge = make_edge()
