"""The simulated person: eats, announces meals over HTTP, confirms, eats rescue carbs, survives a missing hub.

The hub here is a small real HTTP server on loopback that speaks the three calls of the hub's local API the
person uses and records them (the real hub is exercised by ``glucotwin demo --patient``).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from hardware_sim.clock import SimClock
from hardware_sim.devices.pump_model import PumpModel
from hardware_sim.devices.virtual_patient import VirtualPatient
from hardware_sim.person import (
    HubClient,
    HubUnavailableError,
    PersonConfig,
    PersonError,
    PlannedMeal,
    SimulatedPerson,
    hub_url_from,
    plan_meals,
)

pytestmark = pytest.mark.timeout(60)

START = datetime(2026, 3, 2, 6, 0, tzinfo=timezone.utc)
QUICK = PersonConfig(min_poll_interval_s=0.0, http_timeout_s=5.0)


class StandInHub:
    """Records calls; answers a meal with bolus advice; serves one open advice in the status until confirmed."""

    def __init__(self, bolus_u: float = 4.0) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.open_advice: dict[str, Any] | None = None
        self.close_on_confirm = True
        self.bolus_u = bolus_u
        self._next_id = 1
        self._lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                hub.record("GET", self.path, {})
                if self.path != "/api/status":
                    return self._reply(404, {"detail": "not found"})
                self._reply(200, {"hub_ok": True, "advice": hub.open_advice})

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                hub.record("POST", self.path, body)
                if self.path == "/api/meal":
                    advice_id = hub.new_id()
                    return self._reply(200, {"id": advice_id, "kind": "meal_bolus", "bolus_u": hub.bolus_u,
                                             "rescue_carbs_g": 0.0, "summary": f"take {hub.bolus_u} U"})
                if self.path == "/api/confirm":
                    if hub.close_on_confirm and hub.open_advice and hub.open_advice["id"] == body["recommendation_id"]:
                        hub.open_advice = None
                    return self._reply(200, {"status": "confirmed"})
                self._reply(404, {"detail": "not found"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def record(self, method: str, path: str, body: dict[str, Any]) -> None:
        with self._lock:
            self.calls.append((method, path, body))

    def new_id(self) -> int:
        with self._lock:
            self._next_id += 1
            return self._next_id - 1

    def posts(self, path: str) -> list[dict[str, Any]]:
        with self._lock:
            return [body for method, p, body in self.calls if method == "POST" and p == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub() -> Iterator[StandInHub]:
    server = StandInHub()
    yield server
    server.close()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout_s)


def new_world(hub_url: Any, meals: list[PlannedMeal], config: PersonConfig = QUICK,
              pump: bool = False) -> tuple[SimClock, VirtualPatient, SimulatedPerson]:
    clock = SimClock(START, manual=True)
    patient = VirtualPatient("adult#001", seed=2, sensor="ideal")
    model = None
    if pump:
        model = PumpModel(sink=patient, basal_profile=((0, patient.basal_u_per_h),), reservoir_u=10.5)
        patient.attach_pump(model)
    return clock, patient, SimulatedPerson(patient, clock, meals, hub_url, config, pump=model)


def test_announces_ahead_confirms_the_bolus_and_eats_on_time(hub: StandInHub) -> None:
    meals = [PlannedMeal(60, "breakfast", 50.0, 45.0, announce_at_min=50.0)]
    clock, patient, person = new_world(hub.url, meals)

    async def scenario() -> None:
        person.start()
        await asyncio.sleep(0.01)  # the person's task runs and sleeps on the sim clock
        await clock.step_min(49)
        await asyncio.sleep(0.05)
        assert hub.posts("/api/meal") == []
        await clock.step_min(1)
        await until(lambda: any(e.kind == "bolus_confirmed" for e in person.events))
        await clock.step_min(30)
        await person.stop()

    asyncio.run(scenario())
    assert hub.posts("/api/meal") == [{"carbs_g": 45.0}]  # what was announced, not what is eaten
    assert hub.posts("/api/confirm") == [{"recommendation_id": 1}]
    patient.advance_to(80)
    assert [r.carbs_g for r in patient.history[58:72]] == [0] * 2 + [5.0] * 10 + [0] * 2  # 50 g from minute 60
    kinds = [e.kind for e in person.events]
    assert kinds == ["meal_announced", "bolus_confirmed"]


def test_eats_rescue_carbs_once_when_the_hub_says_so(hub: StandInHub) -> None:
    clock, patient, person = new_world(hub.url, [])
    hub.open_advice = {"id": 7, "kind": "rescue_carbs", "status": "open",
                       "payload": {"kind": "rescue_carbs", "rescue_carbs_g": 15.0, "bolus_u": 0.0}}
    hub.close_on_confirm = False  # even if the advice stays open, it is not eaten twice

    async def scenario() -> None:
        person.start()
        await asyncio.sleep(0.01)  # the person's task runs and sleeps on the sim clock
        await clock.step_min(5)
        await until(lambda: len(person._handled_advice) == 1 and len(hub.posts("/api/confirm")) == 1)
        for _ in range(4):
            await clock.step_min(5)
            await asyncio.sleep(0.05)
        await person.stop()

    asyncio.run(scenario())
    assert patient.eaten_carbs_g == 15.0
    patient.advance_to(20)
    assert sum(r.carbs_g for r in patient.history) == 15.0 and patient.history[5].carbs_g == 10.0  # fast carbs
    assert hub.posts("/api/confirm") == [{"recommendation_id": 7}]
    assert sum(1 for method, path, _ in hub.calls if path == "/api/status") >= 3  # it kept looking


def test_keeps_living_without_a_hub(caplog: pytest.LogCaptureFixture) -> None:
    meals = [PlannedMeal(30, "lunch", 40.0, 40.0, announce_at_min=20.0),
             PlannedMeal(90, "snack", 10.0, None, announce_at_min=80.0)]
    clock, patient, person = new_world(closed_port_url(), meals)

    async def scenario() -> None:
        person.start()
        await asyncio.sleep(0.01)  # the person's task runs and sleeps on the sim clock
        for _ in range(24):
            await clock.step_min(5)
            await asyncio.sleep(0.01)
        await until(lambda: person.hub_errors >= 3)
        assert person._task is not None and not person._task.done()
        await person.stop()

    asyncio.run(scenario())
    patient.advance_to(120)
    assert sum(r.carbs_g for r in patient.history) == 50.0  # both meals eaten, hub or no hub
    kinds = [e.kind for e in person.events]
    assert "hub_error" in kinds and "meal_not_announced" in kinds and "meal_announced" not in kinds
    assert any("hub_error" in message for message in caplog.messages)


def test_the_hub_url_can_come_later_from_a_file(hub: StandInHub, tmp_path: Path) -> None:
    url_file = tmp_path / "hub-url"
    source = hub_url_from(url_file=url_file)
    assert source() is None
    meals = [PlannedMeal(15, "early", 20.0, 20.0, announce_at_min=5.0),
             PlannedMeal(60, "later", 30.0, 30.0, announce_at_min=50.0)]
    clock, patient, person = new_world(source, meals)

    async def scenario() -> None:
        person.start()
        await asyncio.sleep(0.01)  # the person's task runs and sleeps on the sim clock
        await clock.step_min(10)
        await asyncio.sleep(0.05)
        url_file.write_text(hub.url + "\n")
        await clock.step_min(40)
        await until(lambda: len(hub.posts("/api/meal")) == 1)
        await person.stop()

    asyncio.run(scenario())
    assert hub.posts("/api/meal") == [{"carbs_g": 30.0}]  # the first was missed (no hub yet), the second told
    assert person.hub_errors == 1
    assert hub_url_from("http://x:1")() == "http://x:1"


def test_changes_the_pump_cartridge_when_it_runs_low() -> None:
    clock, patient, person = new_world(None, [], pump=True)

    async def scenario() -> None:
        person.start()
        await asyncio.sleep(0.01)  # the person's task runs and sleeps on the sim clock
        for _ in range(12):
            await clock.step_min(5)
        await person.stop()

    asyncio.run(scenario())
    assert person.pump is not None and person.pump.reservoir_u > 190
    assert [e.kind for e in person.events] == ["pump_refilled"]
    assert patient.delivered_insulin_u == pytest.approx(patient.basal_u_per_h, rel=1e-6)  # basal never stopped


def test_scenario_meals_are_seeded_and_the_announcement_carries_the_carb_count_error() -> None:
    config = PersonConfig()
    days = 5 * 1440
    a, _ = plan_meals("standard", "adult#001", 4, days, 0, config)
    b, _ = plan_meals("standard", "adult#001", 4, days, 0, config)
    c, _ = plan_meals("standard", "adult#001", 5, days, 0, config)
    assert a == b and a != c
    assert all(m.carbs_announced_g == m.carbs_eaten_g for m in a)  # "standard": exact counting
    for meal in a:
        lead = meal.start_min - meal.announce_at_min
        assert config.announce_lead_min - config.announce_jitter_min <= lead <= config.announce_lead_min + config.announce_jitter_min

    clock = SimClock(START, manual=True)
    patient = VirtualPatient("adult#001", seed=4)
    person = SimulatedPerson.from_scenario(patient, clock, None, scenario="three-meals", seed=4, duration_days=3,
                                           carb_count_error_fraction=0.3)
    assert [m.name for m in person.meals[:3]] == ["breakfast", "lunch", "dinner"]  # the day starts at 06:00
    assert abs(person.meals[0].start_min - 60) <= 60  # breakfast around 07:00 = minute 60
    errors = [m.carbs_announced_g / m.carbs_eaten_g - 1 for m in person.meals if m.carbs_announced_g is not None]
    assert len(errors) == 9 and max(abs(e) for e in errors) <= 0.3 + 0.02 and any(abs(e) > 0.05 for e in errors)
    person.eat_planned_meals()
    assert patient.eaten_carbs_g == pytest.approx(sum(m.carbs_eaten_g for m in person.meals))


def test_hub_client_errors_are_typed(hub: StandInHub) -> None:
    client = HubClient(hub.url, timeout_s=2.0)
    with pytest.raises(HubUnavailableError, match="404"):
        client._call("GET", "/api/nothing")
    with pytest.raises(HubUnavailableError):
        HubClient(closed_port_url(), timeout_s=2.0).status()
    with pytest.raises(PersonError):
        PersonConfig(announce_lead_min=5, announce_jitter_min=10)


def test_sim_serve_patient_option_puts_the_patient_behind_both_devices(tmp_path: Path) -> None:
    import argparse

    from hardware_sim.cli import build_devices, register_sim
    from hardware_sim.faults import FaultPlan

    parser = argparse.ArgumentParser()
    register_sim(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["sim", "serve", "--patient", "adult#002", "--seed", "3", "--scenario", "realistic",
                              "--cgm-warmup-min", "30"])

    async def build() -> tuple[list[Any], list[asyncio.Task[Any]]]:
        devices = build_devices(args, SimClock(START, manual=True), FaultPlan())
        people = [t for t in asyncio.all_tasks() if t.get_name() == "simulated person"]
        for task in people:
            task.cancel()
        await asyncio.gather(*people, return_exceptions=True)
        return devices, people

    (sensor, pump), people = asyncio.run(build())
    patient = sensor.model.source
    assert isinstance(patient, VirtualPatient) and patient.name == "adult#002" and patient.seed == 3
    assert sensor.model.config.warmup_min == 30  # the other options still apply
    assert pump.model.sink is patient and pump.model.basal_profile == ((0, 1.37),)  # adult#002: 1.3736 U/h
    assert len(people) == 1 and patient.eaten_carbs_g > 30 * 150  # a month of realistic meals planned
    assert patient._sensitivity is not None  # the realistic scenario's sensitivity drift reaches the patient
    with pytest.raises(PersonError):
        trace = tmp_path / "trace.csv"
        trace.write_text("0,100\n")
        build_devices(parser.parse_args(["sim", "serve", "--patient", "adult#001", "--trace", str(trace)]),
                      SimClock(manual=True), FaultPlan())


@pytest.mark.timeout(240)
def test_glucotwin_sim_serve_patient_announces_meals_to_the_hub(hub: StandInHub, tmp_path: Path) -> None:
    import time

    from tests.firmware_bridge.sim_process import simulator

    info = tmp_path / "patient.json"
    with simulator("--patient", "adult#001", "--seed", "1", "--acceleration", "30000",
                   "--start", "2026-03-02T06:30:00+00:00", "--person-hub-url", hub.url,
                   "--patient-info-file", str(info), startup_timeout_s=120) as spec:
        assert spec.startswith("tcp-client:127.0.0.1:")
        at_start = json.loads(info.read_text())  # written before the spec line
        assert at_start["therapy"]["carb_ratio_g_per_u"] == 10.0 and at_start["events"] == []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (hub.posts("/api/meal") and hub.posts("/api/confirm")
                                                   and any(path == "/api/status" for _, path, _ in hub.calls)):
            time.sleep(0.1)
    told = [body["carbs_g"] for body in hub.posts("/api/meal")]
    # The simulator's clock runs while it starts, so the first meals may pass before the person exists; what was
    # told is a run of the planned announcements (seed 1, 30 days from 06:30), in order.
    planned, _ = plan_meals("standard", "adult#001", 1, 30 * 1440, 6 * 60 + 30, PersonConfig())
    announced = [m.carbs_announced_g for m in planned]
    assert told and any(announced[i:i + len(told)] == told for i in range(len(announced)))
    assert hub.posts("/api/confirm")[0] == {"recommendation_id": 1}
    assert any(path == "/api/status" for _, path, _ in hub.calls)
    at_end = json.loads(info.read_text())  # rewritten when the simulator stopped
    noted = [e["carbs_announced_g"] for e in at_end["events"] if e["kind"] == "meal_announced"]
    assert noted and noted == told[:len(noted)]  # a call cut short by the stop is told but not noted
    assert at_end["summary"]["events"]["bolus_confirmed"] >= 1
