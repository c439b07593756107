"""A tiny emulated peripheral for the radio/air tests: a Battery Service plus a control point.

Not a product device (H4 writes the CGM and pump): it exercises read, write with and without response,
notifications (also longer than MTU-3, to see them truncated) and an indicating control point.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from bumble.att import ATT_WRITE_NOT_PERMITTED_ERROR, ATT_Error
from bumble.device import Connection, Device
from bumble.gatt import Characteristic, CharacteristicValue, Service

from hardware_sim.air.peripheral import advertising_data, static_address_for

BATTERY_SERVICE_UUID = "0000180f-0000-1000-8000-00805f9b34fb"
BATTERY_LEVEL_UUID = "00002a19-0000-1000-8000-00805f9b34fb"
CONTROL_POINT_UUID = "7e570001-9c2b-4f00-9a5e-6f1d0c2a0001"
BULK_UUID = "7e570002-9c2b-4f00-9a5e-6f1d0c2a0001"
SINK_UUID = "7e570003-9c2b-4f00-9a5e-6f1d0c2a0001"

OP_SEND_LEVELS = 0x01  # [0x01, n] -> n level notifications 0..n-1, then indication [0x06, 0x01, 0x01]
OP_SEND_BULK = 0x02  # [0x02, n] -> one bulk notification of n octets 0..n-1, then indication
RESPONSE = 0x06
SUCCESS, NOT_SUPPORTED = 0x01, 0x02
BULK_LENGTH = 200


def _reject_write(connection: Connection, value: bytes) -> None:
    # bumble's GATT server does not check write permissions, and any exception other than ATT_Error leaves the
    # request unanswered (the client times out): emulations answer errors by raising ATT_Error.
    raise ATT_Error(error_code=ATT_WRITE_NOT_PERMITTED_ERROR)


class BatteryPeripheral:
    """Device model: its state (level, writes received, connection history) survives hub reconnects."""

    def __init__(self, name: str = "GT-Battery", level: int = 87) -> None:
        self.name = name
        self.address = static_address_for(name)
        self.level = level
        self.sink_writes: list[bytes] = []
        self.connections = 0
        self.disconnect_reasons: list[int] = []
        self._characteristics: dict[Device, dict[str, Characteristic]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- EmulatedPeripheral -----------------------------------------------------------------------------------
    def attach(self, device: Device) -> None:
        level = Characteristic(
            BATTERY_LEVEL_UUID,
            Characteristic.Properties.READ | Characteristic.Properties.NOTIFY,
            Characteristic.READABLE,
            CharacteristicValue(read=lambda connection: bytes([self.level]), write=_reject_write),
        )
        control_point = Characteristic(
            CONTROL_POINT_UUID,
            Characteristic.Properties.WRITE | Characteristic.Properties.INDICATE,
            Characteristic.WRITEABLE,
            CharacteristicValue(write=lambda connection, value: self._on_control_point(device, connection, value)),
        )
        bulk = Characteristic(BULK_UUID, Characteristic.Properties.NOTIFY, Characteristic.READABLE, b"")
        sink = Characteristic(
            SINK_UUID,
            Characteristic.Properties.READ | Characteristic.Properties.WRITE | Characteristic.Properties.WRITE_WITHOUT_RESPONSE,
            Characteristic.READABLE | Characteristic.WRITEABLE,
            CharacteristicValue(
                read=lambda connection: self.sink_writes[-1] if self.sink_writes else b"",
                write=lambda connection, value: self.sink_writes.append(bytes(value)),
            ),
        )
        device.add_service(Service(BATTERY_SERVICE_UUID, [level, control_point, bulk, sink]))
        device.advertising_data = advertising_data(self.name, [0x180F])
        self._characteristics[device] = {"level": level, "control_point": control_point, "bulk": bulk}

    def on_connected(self, device: Device, connection: Connection) -> None:
        self.connections += 1

    def on_disconnected(self, device: Device, connection: Connection, reason: int) -> None:
        self.disconnect_reasons.append(reason)

    def detach(self, device: Device) -> None:
        self._characteristics.pop(device, None)

    # -- behaviour --------------------------------------------------------------------------------------------
    async def set_level(self, level: int) -> None:
        """Change the level and notify every subscribed hub on every attached link."""
        self.level = level
        for device, characteristics in list(self._characteristics.items()):
            await device.notify_subscribers(characteristics["level"], bytes([level]))

    def _on_control_point(self, device: Device, connection: Connection, value: bytes) -> None:
        task = asyncio.get_running_loop().create_task(self._run_procedure(device, connection, bytes(value)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_procedure(self, device: Device, connection: Connection, value: bytes) -> None:
        characteristics = self._characteristics[device]
        opcode = value[0] if value else 0
        count = value[1] if len(value) > 1 else 0
        code = SUCCESS
        if opcode == OP_SEND_LEVELS:
            for index in range(count):
                await device.notify_subscriber(connection, characteristics["level"], bytes([index]))
        elif opcode == OP_SEND_BULK:
            await device.notify_subscriber(connection, characteristics["bulk"], bytes(range(count)))
        else:
            code = NOT_SUPPORTED
        await device.indicate_subscriber(connection, characteristics["control_point"], bytes([RESPONSE, opcode, code]))


# -- a server process for the loopback TCP tests ----------------------------------------------------------------
def serve_main(argv: list[str] | None = None) -> None:
    """``python -m tests.hardware_sim.air_test_peripheral [FAULT_PLAN] [ACCELERATION]``: serve a BatteryPeripheral
    on an ephemeral loopback port, print ``PORT <n>`` and run until stdin closes (the test process ends)."""
    import sys

    from hardware_sim.air.server import serve
    from hardware_sim.clock import SimClock
    from hardware_sim.faults import FaultPlan

    args = sys.argv[1:] if argv is None else argv
    plan = FaultPlan.parse(args[0] if args else None)
    acceleration = float(args[1]) if len(args) > 1 else 1.0

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await serve([BatteryPeripheral()], port=0, clock=SimClock(acceleration=acceleration), fault_plan=plan)
        print(f"PORT {server.port}", flush=True)
        stdin_closed = loop.create_future()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

        async def watch_stdin() -> None:
            await reader.read()
            stdin_closed.set_result(None)

        watcher = loop.create_task(watch_stdin())
        try:
            await stdin_closed
        finally:
            watcher.cancel()
            await server.close()

    asyncio.run(main())


if __name__ == "__main__":
    serve_main()


class ServerProcess:
    """The battery air server in a separate Python process (a real loopback TCP hop), for tests."""

    def __init__(self, fault_plan: str = "", acceleration: float = 1.0) -> None:
        self.args = [fault_plan, str(acceleration)]
        self.process: Any = None
        self.port = 0

    @property
    def spec(self) -> str:
        return f"tcp-client:127.0.0.1:{self.port}"

    def __enter__(self) -> ServerProcess:
        import os
        import subprocess
        import sys
        from pathlib import Path

        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.hardware_sim.air_test_peripheral", *self.args],
            cwd=root, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        line = self.process.stdout.readline()  # the child prints its port as soon as it listens
        if not line.startswith("PORT "):
            self.__exit__()
            raise RuntimeError(f"air server process did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    def kill(self) -> None:
        """Kill the server process abruptly (no clean shutdown of its sockets' peers)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=5)

    def __exit__(self, *exc_info: object) -> None:
        import subprocess

        if self.process is None:
            return
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.process.stdout.close()
        self.process = None
