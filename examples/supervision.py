"""Supervision: a flaky behaviour is restarted with backoff, then stopped past its limit, and
the messages that failed are inspected in the dead-letter log and re-delivered.

Run it: `python -m examples.supervision`.
"""

from __future__ import annotations

from actors import SUBJECT_RESTARTED, SUBJECT_STOPPED, Context
from runtime import Backoff, Runtime, SubjectStopped, run

rt = Runtime()
# Sensors may fail 2 times within 10 s; restarts wait 50 ms, then 100 ms (jitter off, to
# make the output stable).
rt.supervise("sensor:*", name="sensors", max_restarts=2, within=10.0,
             backoff=Backoff(min=0.05, max=1.0, factor=2.0, jitter=0.0))
on, when, middleware, emit = rt.handlers()
healthy = False  # the outside world the sensor reads; broken until we say otherwise


@on("read", subject="sensor:*")
async def read(ctx: Context) -> float:
    if not healthy:
        raise ConnectionError("sensor bus not responding")
    ctx.subject.set("last", 21.5)
    return 21.5


@on(SUBJECT_RESTARTED, SUBJECT_STOPPED, subject="supervisor:sensors")
async def lifecycle(ctx: Context) -> None:
    print(f"{ctx.subject.name}: {ctx.event_type} {ctx.payload['subject']}")


async def main() -> None:
    global healthy
    async with rt:
        for attempt in range(1, 5):
            try:
                await rt.ask("sensor:t1", "read")
            except SubjectStopped as stopped:
                print(f"attempt {attempt}: {stopped}")
            except ConnectionError as error:
                print(f"attempt {attempt}: failed: {error}")
            await rt.idle()  # let the restart (and its backoff) happen
        for letter in rt.dead_letters:
            print(f"dead letter #{letter.id}: {letter.kind} {letter.name!r} to "
                  f"{letter.subject}: {letter.reason}")
        healthy = True
        await rt.restart("sensor:t1")
        first = next(iter(rt.dead_letters))
        print("re-delivered:", await rt.redeliver(first), "->",
              await rt.subject("sensor:t1").get("last"))


if __name__ == "__main__":
    run(main())
