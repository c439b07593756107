"""``glucotwin hub run``: the always-on hub service.

One asyncio loop runs: the CGM session (every reading exactly once, backfilled after every reconnect), the pump
session (status and history polled; doses only through a person's confirmation), the per-reading pipeline, the
local web page and API, a heartbeat file for the watchdog, and the cloud sync in a background thread (never on
the real-time path).

Resilience: a corrupted database is moved aside (kept for forensics) and a fresh one started with an alert,
instead of a crash loop; a full disk raises an alert and the readings stay on the sensor until space returns
(the next backfill fetches them); BLE failures reconnect with backoff inside the sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from cloud_sync.outbox import Outbox
from firmware_bridge.codec.cgms import SensorStatusAnnunciation, SessionStartTime
from firmware_bridge.radio import Radio
from firmware_bridge.sessions.cgm_session import CgmSession, CgmSessionConfig
from firmware_bridge.sessions.tracking import Reading

from ..config import HubConfig
from ..safety import CgmQuality
from ..store import CorruptStoreError, HubStore, StoredReading, StoreFullError
from .pipeline import HubPipeline
from .web import HubRuntime, create_hub_app

logger = logging.getLogger(__name__)

HEARTBEAT_EVERY_S = 10.0
SUPERVISOR_BACKOFF_MAX_S = 60.0
STORE_FULL_RETRY_S = 30.0
UNKNOWN_SESSION = "unknown-session"


def open_store(path: Path, *, now_ms: Callable[[], int]) -> tuple[HubStore, str | None]:
    """Open the store; a corrupted file is renamed aside and a new one started. Returns (store, problem)."""
    try:
        return HubStore(path), None
    except CorruptStoreError as error:
        stamp = datetime.fromtimestamp(now_ms() / 1000, UTC).strftime("%Y%m%dT%H%M%S")
        aside = path.with_name(f"{path.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            source = Path(str(path) + suffix)
            if source.exists():
                source.rename(Path(str(aside) + suffix))
        logger.error("database %s is corrupted (%s); moved to %s and starting a new one", path, error, aside)
        store = HubStore(path)
        store.raise_alert("store_corrupted", "urgent",
                          f"The hub's database was damaged and was set aside ({aside.name}). Data from the sensor "
                          "is being fetched again; older history is in the saved file.", now_ms())
        return store, str(error)


def session_id(start: SessionStartTime | None) -> str:
    return start.to_datetime().isoformat() if start is not None else UNKNOWN_SESSION


def reading_timestamp_ms(start: SessionStartTime | None, offset_min: int, newest_offset_min: int, now_ms: int) -> int:
    """Absolute time of a reading: session start + offset, or (no start time) counted back from now."""
    if start is not None:
        return int(start.to_datetime().timestamp() * 1000) + offset_min * 60_000
    return now_ms - (newest_offset_min - offset_min) * 60_000


def to_stored(reading: Reading, start: SessionStartTime | None, newest_offset_min: int, now_ms: int) -> StoredReading:
    flags = 0
    for name in reading.annunciations:
        member = SensorStatusAnnunciation.__members__.get(name)
        if member is not None:
            flags |= int(member)
    return StoredReading(
        sensor_session=session_id(start),
        time_offset_min=reading.time_offset_min,
        timestamp_ms=reading_timestamp_ms(start, reading.time_offset_min, newest_offset_min, now_ms),
        glucose_mg_dl=reading.glucose_mg_dl,
        trend_mg_dl_min=reading.trend_mg_dl_min,
        annunciations=flags,
        source="backfill" if reading.via == "backfill" else "live",
    )


def cgm_quality(reading: Reading) -> CgmQuality:
    names = {name.upper() for name in reading.annunciations}
    return CgmQuality(
        warming_up=any("WARM" in n or "CALIBRATION_REQUIRED" in n for n in names),
        sensor_fault=any("MALFUNCTION" in n or "GENERAL_DEVICE_FAULT" in n or "SESSION_STOPPED" in n for n in names),
        noisy=any("QUALITY" in n for n in names),
    )


def resume_cgm_session(session: CgmSession, store: HubStore) -> None:
    """After a restart, continue from the last stored reading instead of re-fetching the whole session."""
    latest = store.latest_reading()
    if latest is None or latest.sensor_session == UNKNOWN_SESSION:
        return
    try:
        start = SessionStartTime.from_datetime(datetime.fromisoformat(latest.sensor_session))
    except ValueError:
        return
    session.session_start_time = start
    session.tracker.last_delivered_offset = first_gap_offset(store, latest.sensor_session)


def first_gap_offset(store: HubStore, sensor_session: str, interval_min: int = 5) -> int | None:
    """The last offset before the first hole in a session's stored readings (or the newest when complete).

    Resuming there, rather than from the newest reading, lets the next backfill fill any older hole too; the
    store drops the duplicates the sensor sends again.
    """
    offsets = [row[0] for row in store.conn.execute(
        "SELECT time_offset_min FROM readings WHERE sensor_session = ? ORDER BY time_offset_min", (sensor_session,))]
    if not offsets:
        return None
    for before, after in zip(offsets, offsets[1:]):
        if after - before > interval_min:
            return before
    return offsets[-1]


class HubService:
    def __init__(self, config: HubConfig, *, now_ms: Callable[[], int] | None = None,
                 heartbeat_path: Path | None = None, web: bool = True,
                 radio_factory: Callable[[], Radio] | None = None,
                 on_reading: Callable[[StoredReading], None] | None = None,
                 sync_idle_s: float = 30.0) -> None:
        self.config = config
        self.radio_factory = radio_factory or (lambda: Radio.from_spec(config.devices.transport))
        self.on_reading = on_reading
        self.sync_idle_s = sync_idle_s
        self.now_ms = now_ms or (lambda: int(time.time() * 1000))
        self.heartbeat_path = heartbeat_path or config.storage_path.with_suffix(".heartbeat")
        self.web = web
        self.stop_event = asyncio.Event()
        self.runtime: HubRuntime | None = None
        self.pipeline: HubPipeline | None = None
        self.store: HubStore | None = None
        self._sync_stop = threading.Event()

    async def run(self) -> None:
        store, problem = open_store(self.config.storage_path, now_ms=self.now_ms)
        self.store = store
        outbox = Outbox(sqlite_utils.Database(store.conn))
        pipeline = HubPipeline(store, self.config, outbox=outbox, now_ms=self.now_ms)
        self.pipeline = pipeline
        runtime = HubRuntime(pipeline, self.config)
        self.runtime = runtime
        if problem:
            runtime.devices["store"] = "recovered from corruption"
        tasks = [asyncio.create_task(self._heartbeat(runtime), name="heartbeat"),
                 asyncio.create_task(self._supervised("devices", self._devices, runtime), name="devices")]
        if self.web:
            tasks.append(asyncio.create_task(self._supervised("web", self._web, runtime), name="web"))
        sync_thread = self._start_sync()
        try:
            await self.stop_event.wait()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self._sync_stop.set()
            if sync_thread is not None:
                sync_thread.join(timeout=5)
            store.close()

    async def _supervised(self, name: str, body: Callable[[HubRuntime], Any], runtime: HubRuntime) -> None:
        """Run ``body`` forever: if it fails, say so on the page and in the log, and start it again.

        A dead devices task must never hide behind a healthy heartbeat: while it is down, the hub reports it.
        """
        backoff_s = 1.0
        while True:
            try:
                await body(runtime)
                backoff_s = 1.0
            except asyncio.CancelledError:
                raise
            except BaseException as error:  # uvicorn raises SystemExit on a busy port; keep the hub alive
                logger.exception("%s task failed; restarting in %.0f s", name, backoff_s)
                runtime.devices[name] = f"FAILED ({type(error).__name__}: {error}); restarting"
            await asyncio.sleep(backoff_s)
            backoff_s = min(backoff_s * 2, SUPERVISOR_BACKOFF_MAX_S)

    async def _web(self, runtime: HubRuntime) -> None:
        import uvicorn

        server = uvicorn.Server(uvicorn.Config(create_hub_app(runtime), host=self.config.web.host,
                                               port=self.config.web.port, log_level="warning", lifespan="off"))
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        try:
            await server.serve()
        finally:
            server.should_exit = True
        if not server.started:
            raise OSError(f"the hub page could not listen on {self.config.web.host}:{self.config.web.port}")

    def stop(self) -> None:
        self.stop_event.set()

    async def _heartbeat(self, runtime: HubRuntime) -> None:
        while True:
            runtime.beat()
            if runtime.pipeline.latest_reading is not None:  # signal loss means a signal was there before
                try:
                    runtime.pipeline.check_staleness()
                except Exception:  # an alert failure must not stop the heartbeat
                    logger.exception("staleness check failed")
            try:
                tmp = self.heartbeat_path.with_suffix(".tmp")
                tmp.write_text(str(int(time.time())))
                os.replace(tmp, self.heartbeat_path)
            except OSError as error:
                logger.warning("cannot write heartbeat: %s", error)
            await asyncio.sleep(HEARTBEAT_EVERY_S)

    async def _devices(self, runtime: HubRuntime) -> None:
        pipeline = runtime.pipeline
        async with self.radio_factory() as radio:
            session = CgmSession(radio, CgmSessionConfig())
            resume_cgm_session(session, pipeline.store)
            runtime.devices["cgm"] = "searching"
            pump_task = asyncio.create_task(self._pump(radio, runtime)) if self.config.devices.pump else None
            newest = 0
            try:
                async for reading in session.readings():
                    runtime.devices["cgm"] = "connected"
                    newest = max(newest, reading.time_offset_min)
                    pipeline.cgm_quality = cgm_quality(reading)
                    stored = to_stored(reading, session.session_start_time, newest, self.now_ms())
                    if self.on_reading is not None:
                        self.on_reading(stored)
                    while True:  # the session already counts this reading as delivered: never drop it
                        try:
                            pipeline.on_reading(stored)
                            break
                        except StoreFullError as error:
                            logger.error("storage full: %s", error)
                            runtime.devices["store"] = "FULL: readings stay on the sensor until space is freed"
                            await asyncio.sleep(STORE_FULL_RETRY_S)
                    if runtime.devices.get("store", "").startswith("FULL"):
                        runtime.devices["store"] = "space available again"
            finally:
                if pump_task is not None:
                    pump_task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await pump_task

    async def _pump(self, radio: Radio, runtime: HubRuntime) -> None:
        from .pump_link import follow_pump

        await follow_pump(radio, runtime, now_ms=self.now_ms)

    def _start_sync(self) -> threading.Thread | None:
        if not self.config.cloud.url:
            return None
        from .sync_worker import run_sync_worker

        thread = threading.Thread(target=run_sync_worker, args=(self.config, self._sync_stop),
                                  kwargs={"idle_interval_s": self.sync_idle_s}, name="cloud-sync", daemon=True)
        thread.start()
        return thread


def run_hub(config: HubConfig, **kwargs: Any) -> None:
    service = HubService(config, **kwargs)
    asyncio.run(service.run())
