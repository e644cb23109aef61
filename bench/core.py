"""Core benchmark: property updates cascading into derived state, against plain asyncio actors.

Workload: UPDATES `set("cpu", v)` spread uniformly over SUBJECTS subjects. Each change of cpu
derives `health` (ok / warning / critical) and each change of health counts a transition.
Senders are SENDERS concurrent tasks, each owning a slice of the subjects (so per-sender order
fixes the result). The result is checked against a sequential replay. The baseline, in the same
process and run, is the same workload on plain asyncio actors: one queue and one consumer task
per subject, no framework.

Two ways of sending, each measured on both sides:
- await: every update is awaited until applied (`await ref.set("cpu", v)`; the baseline puts
  the value with a future and awaits it);
- tell: fire-and-forget (`await rt.tell(name, "cpu", v)`, a behaviour sets the property; the
  baseline `put_nowait`s), then wait until everything is applied.

Then memory: resident bytes per activated idle subject (3 properties each, names included).

Run: python bench/core.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from actors import PROPERTY_CHANGED
from runtime import Runtime

# Ratio to plain asyncio actors, pure Python (issue #12; the compiled build aims at 0.40 for
# tell). Awaited updates beat the baseline: it pays a task switch per update, an inline turn
# does not.
TARGETS = {"await": 1.0, "tell": 0.30}


def health_of(cpu: int) -> str:
    return "critical" if cpu > 90 else "warning" if cpu > 70 else "ok"


def workload(updates: int, subjects: int, seed: int = 7) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    return [(rng.randrange(subjects), rng.randrange(101)) for _ in range(updates)]


def replay(work: list[tuple[int, int]]) -> dict[int, tuple[int, str, int]]:
    state: dict[int, list] = {}
    for s, cpu in work:
        st = state.setdefault(s, [None, None, 0])
        if st[0] == cpu:
            continue
        st[0] = cpu
        h = health_of(cpu)
        if h != st[1]:
            st[1] = h
            st[2] += 1
    return {s: tuple(v) for s, v in state.items()}


def shards(work: list[tuple[int, int]], senders: int) -> list[list[tuple[int, int]]]:
    out: list[list[tuple[int, int]]] = [[] for _ in range(senders)]
    for s, cpu in work:
        out[s % senders].append((s, cpu))
    return out


async def run_subjects(work, subjects: int, senders: int, mode: str) -> tuple[float, dict]:
    rt = Runtime(passivate_after=None)
    on, when, _, _ = rt.handlers()

    @on("cpu", subject="device:*")
    async def cpu_reading(ctx):
        ctx.subject.set("cpu", ctx.payload)

    @on(PROPERTY_CHANGED, subject="device:*")
    @when(lambda ctx: ctx.property_name == "cpu")
    async def derive_health(ctx):
        ctx.subject.set("health", health_of(ctx.new_value))

    @on(PROPERTY_CHANGED, subject="device:*")
    @when(lambda ctx: ctx.property_name == "health")
    async def count_transitions(ctx):
        ctx.subject.set("transitions", ctx.subject.get("transitions", 0) + 1)

    names = [f"device:{i:05d}" for i in range(subjects)]
    async with rt:
        refs = [rt.subject(n) for n in names]

        async def sender(part):
            if mode == "await":
                for s, cpu in part:
                    await refs[s].set("cpu", cpu)
            else:
                for s, cpu in part:
                    await rt.tell(names[s], "cpu", cpu)

        t0 = time.perf_counter()
        await asyncio.gather(*(sender(p) for p in shards(work, senders)))
        await rt.idle()
        elapsed = time.perf_counter() - t0
        result = {}
        for i, ref in enumerate(refs):
            st = await ref.state()
            if st.properties:
                p = st.properties
                result[i] = (p["cpu"], p["health"], p["transitions"])
    return elapsed, result


async def run_baseline(work, subjects: int, senders: int, mode: str) -> tuple[float, dict]:
    """Plain asyncio actors: one queue and one consumer task per subject."""
    states: list[dict] = [{} for _ in range(subjects)]
    queues: list[asyncio.Queue] = [asyncio.Queue() for _ in range(subjects)]
    loop = asyncio.get_running_loop()

    async def consumer(i: int) -> None:
        q, st = queues[i], states[i]
        while True:
            cpu, fut = await q.get()
            if st.get("cpu") != cpu:
                st["cpu"] = cpu
                h = health_of(cpu)
                if st.get("health") != h:
                    st["health"] = h
                    st["transitions"] = st.get("transitions", 0) + 1
            if fut is not None:
                fut.set_result(None)
            q.task_done()

    consumers = [loop.create_task(consumer(i)) for i in range(subjects)]

    async def sender(part):
        if mode == "await":
            for s, cpu in part:
                fut = loop.create_future()
                queues[s].put_nowait((cpu, fut))
                await fut
        else:
            for s, cpu in part:
                queues[s].put_nowait((cpu, None))

    t0 = time.perf_counter()
    await asyncio.gather(*(sender(p) for p in shards(work, senders)))
    for q in queues:
        await q.join()
    elapsed = time.perf_counter() - t0
    for c in consumers:
        c.cancel()
    await asyncio.gather(*consumers, return_exceptions=True)
    result = {i: (st["cpu"], st["health"], st["transitions"]) for i, st in enumerate(states) if st}
    return elapsed, result


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def idle_memory(count: int) -> float:
    """Bytes of resident memory per activated, idle subject with 3 properties on the SQLite
    store, its name included (the runtime holds it; the caller keeps none)."""
    with tempfile.TemporaryDirectory() as tmp:
        async with Runtime(f"sqlite:///{tmp}/mem.db", passivate_after=None) as rt:
            await rt.subject("warm").patch({"cpu": 1, "mem": 2, "health": "ok"})
            await rt.flush()
            gc.collect()
            before = resident_bytes()
            for start in range(0, count, 1000):
                await asyncio.gather(*(
                    rt.subject(f"device:{i:06d}").patch(
                        {"cpu": i % 101, "mem": i % 37, "health": "ok"})
                    for i in range(start, min(count, start + 1000))))
            await rt.idle()
            await rt.flush()
            gc.collect()
            grown = resident_bytes() - before
            assert rt.stats()["active"] == count + 1
            return grown / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a tenth of the workload")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    args = parser.parse_args()
    updates, subjects = (20_000, 1_000) if args.quick else (200_000, 10_000)
    idle = 200_000  # fewer, and the steps in which dictionaries and arenas grow show more
    senders = 1000 if not args.quick else 100
    if args.loop == "uvloop":
        import uvloop
        runner = uvloop.run
    else:
        runner = asyncio.run
    work = workload(updates, subjects)
    expected = replay(work)

    # Memory first, in a fresh process: resident memory freed by the runs below would be
    # reused by the subjects and hide what they cost.
    per_subject = runner(idle_memory(idle))
    results = {}
    for mode in ("await", "tell"):
        rounds = []
        for _ in range(3):  # interleave the two so that machine noise hits both alike
            b_t, b_res = runner(run_baseline(work, subjects, senders, mode))
            s_t, s_res = runner(run_subjects(work, subjects, senders, mode))
            assert b_res == expected, "baseline disagrees with the sequential replay"
            assert s_res == expected, "subjects disagrees with the sequential replay"
            rounds.append((b_t, s_t))
        results[mode] = (min(b for b, _ in rounds), min(s for _, s in rounds))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"workload: {updates:,} updates over {subjects:,} subjects, {senders} senders, "
          f"loop={args.loop}, load average {os.getloadavg()[0]:.2f}")
    for mode, (b_best, s_best) in results.items():
        print(f"[{mode}] plain asyncio actors : {updates / b_best:>10,.0f} updates/s")
        print(f"[{mode}] subjects             : {updates / s_best:>10,.0f} updates/s")
        print(f"[{mode}] ratio                : {b_best / s_best:.2f} of the baseline's "
              f"throughput (target >= {TARGETS[mode]})")
    print(f"idle subject memory  : {per_subject:,.0f} bytes each over {idle:,} subjects, by "
          "RSS, names included (target <= 450)")
    print(f"peak RSS             : {rss / 2**20:,.0f} MiB")


if __name__ == "__main__":
    main()
