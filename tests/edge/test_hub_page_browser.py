"""The hub's local page in a real browser: Debian's headless Chromium at a phone's size (412 x 915).

The hub app (``create_hub_app`` over a real pipeline and SQLite file, six hours of readings with a meal, a
bolus and open advice) is served by uvicorn on a loopback port in a thread; Chromium dumps the DOM after
rendering and takes a screenshot. Skipped cleanly when /usr/bin/chromium is absent.
"""

from __future__ import annotations

import math
import re
import shutil
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import sqlite_utils

from cloud_sync.outbox import Outbox
from edge.agent.pipeline import HubPipeline
from edge.agent.web import HubRuntime, create_hub_app
from edge.config import config_from_dict
from edge.demo import free_port
from edge.store import HubStore, InsulinEvent, StoredReading

CHROMIUM = "/usr/bin/chromium"
PHONE = (412, 915)
START_MS = 1_790_000_000_000
CONFIG = config_from_dict({"therapy": {"age_group": "adult", "body_weight_kg": 70, "basal_u_per_h": 1.0,
                                       "insulin_sensitivity_mg_dl_per_u": 50, "carb_ratio_g_per_u": 10}})


def meal_curve_mg_dl(minute: int) -> float:
    """Flat at 110, then a meal at 3 h rising to ~200 and falling back: the chart has a shape to show."""
    since = minute - 180
    bump = 90.0 * (since / 60.0) * math.exp(1.0 - since / 60.0) if since >= 0 else 0.0
    return float(round(110.0 + bump))


@pytest.fixture()
def hub_url(tmp_path: Path) -> Iterator[tuple[str, HubRuntime]]:
    import uvicorn

    clock = [START_MS]
    store = HubStore(tmp_path / "hub.sqlite")
    pipeline = HubPipeline(store, CONFIG, outbox=Outbox(sqlite_utils.Database(store.conn)), now_ms=lambda: clock[0],
                           auto_advice=False)
    previous = None
    for minute in range(0, 6 * 60 + 5, 5):
        clock[0] = START_MS + minute * 60_000
        glucose = meal_curve_mg_dl(minute)
        trend = None if previous is None else (glucose - previous) / 5
        previous = glucose
        if minute == 185:
            pipeline.on_insulin(InsulinEvent(clock[0], "bolus", insulin_u=4.0, pump_sequence=1))
        pipeline.on_reading(StoredReading("s1", minute, clock[0], glucose, trend_mg_dl_min=trend))
    clock[0] += 2 * 60_000
    pipeline.advise(announced_carbs_g=30.0, store=True)  # open advice for the page's advice box
    runtime = HubRuntime(pipeline, CONFIG)
    runtime.devices["cgm"] = "connected"
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_hub_app(runtime), host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, name="hub-web", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield url, runtime
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        store.close()


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={profile}", f"--window-size={PHONE[0]},{PHONE[1]}", *args],
                          capture_output=True, text=True, timeout=120)


def test_the_hub_page_renders_on_a_phone_in_headless_chromium(hub_url, tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        pytest.skip(f"{CHROMIUM} is absent (apt-get install chromium to run the browser check)")
    url, runtime = hub_url
    status = requests.get(url + "/api/status", timeout=30).json()
    assert status["iob_u"] > 0 and status["advice"] is not None

    dom = _chromium(["--dump-dom", url + "/"], tmp_path / "profile-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    glucose = re.search(r"<span class=\"glucose\" id=\"glucose\">([^<]+)</span>", html)
    assert glucose is not None and glucose.group(1) == f"{status['glucose_mg_dl']:.0f} mg/dL"
    iob = re.search(r"id=\"iob\">Insulin on board<br><b>([\d.]+) U</b>", html)
    assert iob is not None and float(iob.group(1)) == pytest.approx(status["iob_u"], abs=0.01)
    svg = re.search(r"<svg[^>]*class=\"chart\".*?</svg>", html, re.S)
    assert svg is not None, "no glucose chart"
    points = re.findall(r"<circle [^>]*class=\"pt (in|low|high)\"", svg.group(0))
    assert len(points) == status["readings_stored"] == 73
    assert "high" in points and "in" in points  # the meal crosses 180 mg/dL
    assert re.search(r"<polyline class=\"forecast\" points=\"[\d., ]+\"", svg.group(0)), "no forecast line"
    assert 'id="advice"' in html and "glucotwin confirm" in html

    shot = tmp_path / "hub-phone.png"
    result = _chromium([f"--screenshot={shot}", "--hide-scrollbars", url + "/"], tmp_path / "profile-shot")
    assert result.returncode == 0, result.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == PHONE
    assert len(data) > 20_000, f"{len(data)} bytes: a blank or error page compresses to a few KB"
    print(f"\nhub page on a phone: {shot}")
