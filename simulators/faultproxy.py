"""A TCP fault proxy between terminals and the broker, controlled at run time (the chaos bench).

Each *route* is a loopback listener on a free port that relays every connection to one target (the
broker) byte for byte: the proxy never looks inside the stream, so TLS passes through untouched.
Give each terminal its own route (its ``[broker] port`` points there) and faults can hit one
terminal or all of them:

- :meth:`FaultProxy.cut`: reset every connection and refuse new ones (accepted, then reset) until
  healed, as a broken switch or a pulled cable that the peers notice at once;
- :meth:`FaultProxy.freeze`: bytes stop flowing both ways and new connections hang, as a
  black-holed link that only keepalives notice; TCP semantics are kept (nothing is dropped from a
  stream that resumes);
- :meth:`FaultProxy.delay`: every chunk is held back by N ms in each direction;
- :meth:`FaultProxy.drop`: reset the connections open now, mid-stream; new ones are accepted;
- :meth:`FaultProxy.heal`: back to a clean relay.

Memory is bounded: a direction holds at most ``QUEUE_CHUNKS`` chunks of ``CHUNK`` bytes; a full
queue stops reading, and TCP flow control pushes back on the sender. The relay runs on one asyncio
loop in a daemon thread; the control methods may be called from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
import struct
import threading
from collections import Counter
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

_LOG = logging.getLogger(__name__)
CHUNK = 16384
QUEUE_CHUNKS = 16
#: After one side closed cleanly, how long the other may take to finish before the link is reset.
CLOSE_WAIT_S = 10.0
_T = TypeVar("_T")


@dataclasses.dataclass
class _Route:
    name: str
    server: asyncio.Server
    port: int
    flowing: asyncio.Event  # cleared while frozen
    links: set[_Link] = dataclasses.field(default_factory=set)
    refusing: bool = False
    delay_s: float = 0.0


class _Link:
    """One accepted client connection and its connection to the target."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.target: asyncio.StreamWriter | None = None
        self.tasks: list[asyncio.Task[bool]] = []

    def close(self) -> None:
        """Close both sockets after what was written went out."""
        for writer in (self.client, self.target):
            if writer is not None:
                writer.close()

    def reset(self) -> None:
        """Close both sockets with a TCP reset, as a broken link looks to the peers."""
        for writer in (self.client, self.target):
            if writer is None:
                continue
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        for task in self.tasks:
            task.cancel()


class FaultProxy:
    """Routes to ``target_host:target_port`` on free ports of ``host``; a context manager."""

    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.host = host
        self.counts: Counter[str] = Counter()  # accepted, refused, reset, target_refused
        self._routes: dict[str, _Route] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="faultproxy", daemon=True)

    # -- life cycle (any thread) ------------------------------------------------------------
    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def add_route(self, name: str) -> int:
        """Listen for ``name`` on a free port of ``host``; returns the port."""
        return self._call(self._add_route(name))

    def port(self, name: str) -> int:
        return self._routes[name].port

    def close(self) -> None:
        """Reset every connection, stop listening and end the loop's thread; idempotent."""
        if not self._thread.is_alive():
            return
        self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- faults (any thread); ``names`` None means every route ---------------------------------
    def cut(self, names: Iterable[str] | None = None) -> None:
        """Reset the routes' connections and refuse new ones until :meth:`heal`."""
        self._call(self._apply(names, refusing=True, reset=True))

    def freeze(self, names: Iterable[str] | None = None) -> None:
        """Stop every byte both ways (new connections hang too) until :meth:`heal`."""
        self._call(self._apply(names, frozen=True))

    def delay(self, ms: float, names: Iterable[str] | None = None) -> None:
        """Hold every chunk back by ``ms`` milliseconds in each direction (0: no delay)."""
        self._call(self._apply(names, delay_s=ms / 1000))

    def drop(self, names: Iterable[str] | None = None) -> None:
        """Reset the connections open now, mid-stream; new ones are relayed."""
        self._call(self._apply(names, reset=True))

    def heal(self, names: Iterable[str] | None = None) -> None:
        """A clean relay again: no refusal, no freeze, no delay."""
        self._call(self._apply(names, refusing=False, frozen=False, delay_s=0.0))

    def connections(self, name: str) -> int:
        """Connections of route ``name`` relayed now."""
        return self._call(self._count(name))

    # -- the loop's side -------------------------------------------------------------------
    def _call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    async def _count(self, name: str) -> int:
        return len(self._routes[name].links)

    async def _add_route(self, name: str) -> int:
        if name in self._routes:
            raise ValueError(f"route {name!r} exists already")
        flowing = asyncio.Event()
        flowing.set()
        holder: list[_Route] = []
        server = await asyncio.start_server(lambda r, w: self._accept(holder[0], r, w), self.host, 0)
        route = _Route(name, server, int(server.sockets[0].getsockname()[1]), flowing)
        holder.append(route)
        self._routes[name] = route
        return route.port

    async def _apply(
        self,
        names: Iterable[str] | None,
        refusing: bool | None = None,
        frozen: bool | None = None,
        delay_s: float | None = None,
        reset: bool = False,
    ) -> None:
        chosen = list(self._routes.values()) if names is None else [self._routes[n] for n in names]
        for route in chosen:
            if refusing is not None:
                route.refusing = refusing
            if frozen is not None:
                route.flowing.clear() if frozen else route.flowing.set()
            if delay_s is not None:
                route.delay_s = delay_s
            if reset:
                for link in list(route.links):
                    link.reset()
                    self.counts["reset"] += 1
                route.links.clear()

    async def _close(self) -> None:
        for route in self._routes.values():
            route.server.close()
            for link in list(route.links):
                link.reset()
            route.links.clear()

    async def _accept(self, route: _Route, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = _Link(writer)
        clean = False
        if route.refusing:
            self.counts["refused"] += 1
            link.reset()
            return
        self.counts["accepted"] += 1
        route.links.add(link)
        try:
            await route.flowing.wait()  # a frozen link hangs before it reaches the target too
            try:
                target_reader, link.target = await asyncio.open_connection(*self.target)
            except OSError:
                self.counts["target_refused"] += 1  # the broker is down: the client sees a close
                return
            if link not in route.links:  # reset while connecting
                return
            link.tasks = [
                asyncio.ensure_future(self._pipe(route, reader, link.target)),
                asyncio.ensure_future(self._pipe(route, target_reader, writer)),
            ]
            done, pending = await asyncio.wait(link.tasks, return_when=asyncio.FIRST_COMPLETED)
            if all(t.result() for t in done) and pending:  # one side closed cleanly: let the other finish
                await asyncio.wait(pending, timeout=CLOSE_WAIT_S)
            clean = all(t.done() and t.result() for t in link.tasks)
        except asyncio.CancelledError:
            pass
        finally:
            route.links.discard(link)
            link.close() if clean else link.reset()

    async def _pipe(self, route: _Route, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> bool:
        """One direction: a reader filling a bounded delay line, a writer emptying it when due.
        True once the end of the stream was passed on (a clean close), False on a broken link."""
        loop = asyncio.get_running_loop()
        line: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(maxsize=QUEUE_CHUNKS)

        async def read() -> None:
            while True:
                await route.flowing.wait()
                data = await source.read(CHUNK)
                await line.put((loop.time() + route.delay_s, data))
                if not data:
                    return

        async def write() -> None:
            while True:
                due, data = await line.get()
                await asyncio.sleep(max(0.0, due - loop.time()))
                await route.flowing.wait()
                if not data:
                    sink.write_eof()
                    return
                sink.write(data)
                await sink.drain()

        reading, writing = asyncio.ensure_future(read()), asyncio.ensure_future(write())
        try:
            await asyncio.wait([reading, writing], return_when=asyncio.FIRST_EXCEPTION)
            failed = [t for t in (reading, writing) if t.done() and t.exception() is not None]
            return writing.done() and not failed
        finally:
            reading.cancel()
            writing.cancel()
