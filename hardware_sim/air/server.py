"""The air over loopback TCP: each hub process connects with ``Radio.from_spec("tcp-client:127.0.0.1:PORT")``.

Every TCP client gets its own virtual controller on its own LocalLink, plus fresh bumble Devices (one per
peripheral, each with its own controller) attached to the SAME device models, so two hubs may be connected
at once and a hub may restart and reconnect. When a client socket closes, its link's connections are
dropped (the peripherals see a disconnection and are ready for the next hub).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Sequence

from bumble.transport.common import StreamPacketSink, StreamPacketSource

from hardware_sim.air.peripheral import EmulatedPeripheral
from hardware_sim.air.session import LinkSession
from hardware_sim.clock import SimClock
from hardware_sim.faults import FaultPlan

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"


class _HubConnection(StreamPacketSource):
    """HCI H4 stream of one hub: bytes in -> the hub's virtual controller -> bytes out."""

    def __init__(self, server: AirServer) -> None:
        super().__init__()
        self._server = server
        self.session: LinkSession | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # without it each ATT round trip waits ~40 ms for delayed ACKs
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        assert isinstance(transport, asyncio.WriteTransport)
        self._server.hub_count += 1
        self.session = LinkSession(
            self._server.peripherals,
            self._server.clock,
            self._server.fault_plan,
            hub_source=self,
            hub_sink=StreamPacketSink(transport),
            name=f"hub{self._server.hub_count}",
        )
        self._server._track(self.session, self.session.start())
        logger.info("air: hub connected from %s", transport.get_extra_info("peername"))

    def connection_lost(self, exc: Exception | None) -> None:
        logger.info("air: hub disconnected (%s)", exc or "closed")
        if self.session is not None:
            self.session.hub_controller.host = None
            self._server._track(None, self._server._close_session(self.session))
            self.session = None


class AirServer:
    """A running air server; ``port`` is the bound port (useful with ``port=0``)."""

    def __init__(
        self,
        peripherals: Sequence[EmulatedPeripheral],
        clock: SimClock,
        fault_plan: FaultPlan,
    ) -> None:
        self.peripherals = list(peripherals)
        self.clock = clock
        self.fault_plan = fault_plan
        self.sessions: set[LinkSession] = set()
        self.hub_count = 0
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, host: str = DEFAULT_HOST, port: int = 0) -> AirServer:
        self._server = await asyncio.get_running_loop().create_server(lambda: _HubConnection(self), host, port)
        return self

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("air server is not listening")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def spec(self) -> str:
        """The hub-side transport spec for ``Radio.from_spec``."""
        host = self._server.sockets[0].getsockname()[0] if self._server and self._server.sockets else DEFAULT_HOST
        return f"tcp-client:{host}:{self.port}"

    async def drop_links(self) -> None:
        """Drop every hub's connections now (as a link loss would)."""
        for session in list(self.sessions):
            await session.drop_links()

    async def serve_forever(self) -> None:
        if self._server is None:
            raise RuntimeError("call start() first")
        try:
            await self._server.serve_forever()
        finally:
            await self.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for session in list(self.sessions):
            await self._close_session(session)
        for task in list(self._tasks):
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, timeout=2.0)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), timeout=2.0)
            self._server = None

    async def __aenter__(self) -> AirServer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- internals --------------------------------------------------------------------------------------------
    def _track(self, session: LinkSession | None, coroutine: object) -> None:
        if session is not None:
            self.sessions.add(session)
        task = asyncio.get_running_loop().create_task(coroutine)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _close_session(self, session: LinkSession) -> None:
        self.sessions.discard(session)
        await session.close()


async def serve(
    peripherals: Sequence[EmulatedPeripheral],
    host: str = DEFAULT_HOST,
    port: int = 0,
    clock: SimClock | None = None,
    fault_plan: FaultPlan | None = None,
) -> AirServer:
    """Start serving ``peripherals`` on loopback TCP and return the running server (``await server.close()``).

    Hubs connect with ``Radio.from_spec(server.spec)``. Use ``await server.serve_forever()`` in a CLI.
    """
    server = AirServer(peripherals, clock or SimClock(), fault_plan or FaultPlan())
    return await server.start(host, port)
