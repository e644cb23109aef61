"""Fairness: an actor whose mailbox never empties must not hold up other subjects or the loop.

The scenario runs in a child process: on a runtime that starves its loop, nothing inside the
same loop (not even a timeout) could ever run again to fail the test.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCENARIO = textwrap.dedent("""
    import asyncio
    from runtime import Runtime

    async def main():
        rt = Runtime()
        await rt.start()
        turns = 0

        @rt.on("loop")
        async def again(ctx):
            nonlocal turns
            turns += 1
            await ctx.emit("loop", ctx.subject)

        await rt.tell("spinner", "loop")
        await asyncio.wait_for(asyncio.sleep(0.05), 2)  # a timer of the loop fires
        await asyncio.wait_for(rt.subject("other").set("a", 1), 2)  # another subject answers
        print("other", await asyncio.wait_for(rt.subject("other").get("a"), 2))
        print("spinner kept running", turns > 100)
        await rt.close(timeout=0.2)  # it never goes idle: the shutdown bound ends it

    asyncio.run(main())
""")


def test_a_subject_emitting_to_itself_forever_starves_nobody() -> None:
    try:
        done = subprocess.run([sys.executable, "-c", SCENARIO], capture_output=True, text=True,
                              timeout=30)
    except subprocess.TimeoutExpired:
        raise AssertionError("the event loop starved: a subject emitting to itself held up "
                             "every other subject and timer for 30 s") from None
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["other 1", "spinner kept running True"], done.stdout
