"""A TCP proxy that breaks on command, to test how stores live through outages of real servers.

Put it in front of a server (`FaultProxy("127.0.0.1", 5432)`), point the client at
`127.0.0.1:<proxy.port>`, then simulate trouble: `cut()` kills every open connection (like a
server crash or a network reset), `refuse()` closes new connections as soon as they arrive (like
a server that is down), `delay(seconds)` holds every chunk of traffic (like a hung server or a
saturated network), `lose_replies()` passes requests on but drops the server's answers and then
the connection (a commit whose reply never arrives), and `restore()` ends all of it. It runs in
the test's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib


class FaultProxy:
    """A forwarding TCP proxy on 127.0.0.1 with an ephemeral port."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0  # known after start()
        self.refusing = False
        self.losing_replies = False
        self._delay = 0.0
        self._restored = asyncio.Event()  # set whenever traffic should flow freely
        self._restored.set()
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self.restore()
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def connections(self) -> int:
        return len(self._pairs)

    def cut(self) -> None:
        """Reset every connection open now, in both directions."""
        for client, server in list(self._pairs):
            client.transport.abort()
            server.transport.abort()
        self._pairs.clear()

    def refuse(self) -> None:
        """Close each new connection right after accepting it."""
        self.refusing = True

    def lose_replies(self) -> None:
        """Forward what clients send; drop what the server answers, and cut that connection."""
        self.losing_replies = True

    def delay(self, seconds: float) -> None:
        """Hold each chunk of traffic, both ways, for `seconds` before passing it on."""
        self._delay = seconds
        self._restored.clear()

    def restore(self) -> None:
        """Accept and forward normally again; held traffic goes through at once."""
        self.refusing = False
        self.losing_replies = False
        self._delay = 0.0
        self._restored.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer, replies=True)),
        ]
        for task in pumps:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        # Either side hanging up ends the whole connection: neither protocol half-closes.
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        self._pairs.discard(pair)
        for task in pumps:
            task.cancel()
        writer.transport.abort()
        up_writer.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    replies: bool = False) -> None:
        with contextlib.suppress(OSError):
            while chunk := await reader.read(65536):
                if replies and self.losing_replies:
                    return  # the answer is dropped, and the connection with it
                if self._delay:
                    # Interruptible, so that restore() releases held traffic at once.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._delay):
                            await self._restored.wait()
                writer.write(chunk)
                await writer.drain()
