"""The simulated person: eats the scenario's meals and uses the hub as a person would, over its HTTP API.

The person lives in the simulator's world (the far side of the radio, and of the hub's web page):

* eats the meals of a seeded scenario (:mod:`hardware_sim.scenario`): the carbs go into the virtual patient at
  the meal's minute and eating rate, whatever happens to the hub;
* announces each announced meal to the hub ``announce_lead_min`` (+- a seeded jitter) before eating:
  ``POST /api/meal {"carbs_g": ...}`` with the ANNOUNCED grams (the scenario's carb-count error), and confirms
  the advice when it proposes insulin (``POST /api/confirm``; the hub then commands the pump over BLE);
  unannounced snacks and missed boluses are eaten without telling the hub;
* every ``poll_every_min`` sim minutes reads ``GET /api/status`` and, when an open advice asks for rescue carbs,
  eats them (fast carbs, now) and confirms the advice so it is not eaten twice;
* keeps going when the hub is unreachable or refuses: the meal is still eaten, the failure logged and counted.

HTTP calls run in worker threads (:func:`asyncio.to_thread`) so the emulated devices on the event loop keep
running while the hub, which may be commanding the pump over that very radio, answers.

Randomness: meals and announcement errors come from the scenario's own row streams (seed, subject); the
person's announcement timing from a separate stream (``PERSON_STREAM_ID``) of the same seed.

``glucotwin sim serve --patient NAME`` builds this world with :func:`build_patient_devices`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI registers --patient from this module: numpy, scipy and requests load only when used
    from hardware_sim.devices.virtual_patient import VirtualPatient
    from hardware_sim.scenario import ScenarioRealisation, ScenarioSpec

logger = logging.getLogger(__name__)

PERSON_STREAM_ID = 101  # outside hardware_sim.random_streams.STREAM_IDS, so no trial stream is shifted
RESCUE_KIND = "rescue_carbs"


class PersonError(ValueError):
    """Bad person configuration (negative lead time, unknown scenario...)."""


class HubUnavailableError(RuntimeError):
    """The hub could not be reached, timed out, or answered with an error status."""


@dataclass(frozen=True)
class PersonConfig:
    announce_lead_min: float = 10.0
    """Minutes between announcing a meal (and confirming its bolus) and starting to eat (a pre-bolus)."""
    announce_jitter_min: float = 5.0
    """Uniform +- jitter of the lead time, seeded."""
    poll_every_min: float = 5.0
    """Sim minutes between looks at the hub's status (for rescue-carb advice)."""
    min_poll_interval_s: float = 0.2
    """Never poll faster than this in real seconds (high accelerations)."""
    rescue_rate_g_per_min: float = 10.0
    """Fast carbs (juice, tablets) go down faster than a meal."""
    confirm_corrections: bool = False
    """Also confirm open correction/temp-basal advice seen while polling (a compliant person)."""
    http_timeout_s: float = 60.0
    """A confirm waits for the hub to command the pump over BLE."""
    refill_below_u: float = 10.0
    """Change the pump's cartridge when fewer units are left (the pump has warned since 20 U)."""
    refill_to_u: float = 200.0

    def __post_init__(self) -> None:
        if not (self.announce_lead_min >= 0 and 0 <= self.announce_jitter_min <= self.announce_lead_min
                and self.poll_every_min > 0 and self.min_poll_interval_s >= 0 and self.rescue_rate_g_per_min > 0
                and self.http_timeout_s > 0 and 0 <= self.refill_below_u < self.refill_to_u):
            raise PersonError(f"inconsistent person configuration {self!r}")


@dataclass(frozen=True)
class PlannedMeal:
    start_min: int
    name: str
    carbs_eaten_g: float
    carbs_announced_g: float | None  # None: eaten without telling the hub
    announce_at_min: float


@dataclass(frozen=True)
class PersonEvent:
    minute: float
    kind: str  # meal_announced, bolus_confirmed, meal_not_announced, rescue_carbs_eaten, advice_confirmed,
    # pump_refilled, hub_error
    detail: dict[str, Any] = field(default_factory=dict)


class HubClient:
    """The three calls the person makes, with typed failures (blocking: call from a worker thread)."""

    def __init__(self, base_url: str, timeout_s: float = 60.0) -> None:
        import requests

        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._http = requests.Session()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        import requests

        try:
            response = self._http.request(method, self.base_url + path, json=body, timeout=self.timeout_s)
        except requests.RequestException as error:
            raise HubUnavailableError(f"{method} {path}: {type(error).__name__}: {error}") from error
        if response.status_code >= 400:
            raise HubUnavailableError(f"{method} {path}: HTTP {response.status_code}: {response.text[:200]}")
        try:
            data = response.json()
        except ValueError as error:
            raise HubUnavailableError(f"{method} {path}: not JSON: {response.text[:200]!r}") from error
        if not isinstance(data, dict):
            raise HubUnavailableError(f"{method} {path}: expected a JSON object, got {type(data).__name__}")
        return data

    def status(self) -> dict[str, Any]:
        return self._call("GET", "/api/status")

    def announce_meal(self, carbs_g: float) -> dict[str, Any]:
        return self._call("POST", "/api/meal", {"carbs_g": carbs_g})

    def confirm(self, recommendation_id: int) -> dict[str, Any]:
        return self._call("POST", "/api/confirm", {"recommendation_id": recommendation_id})

    def close(self) -> None:
        self._http.close()


def hub_url_from(url: str | None = None, url_file: str | Path | None = None) -> Callable[[], str | None]:
    """Where the hub is: a fixed URL, or the first line of a file read each time (written once the hub is up)."""
    if url:
        fixed = url.strip()
        return lambda: fixed
    if url_file is None:
        return lambda: None
    path = Path(url_file)

    def from_file() -> str | None:
        with contextlib.suppress(OSError):
            text = path.read_text().strip()
            return text.splitlines()[0].strip() if text else None
        return None

    return from_file


def plan_meals(
    scenario: ScenarioSpec | str,
    subject: str,
    seed: int,
    duration_min: int,
    start_time_of_day_min: int,
    config: PersonConfig,
) -> tuple[list[PlannedMeal], ScenarioRealisation]:
    """The scenario's meals for one subject and seed, with the person's announcement times; and the realisation."""
    import numpy as np

    from hardware_sim.random_streams import RowStreams, subject_key
    from hardware_sim.scenario import realise

    streams = RowStreams([seed], [subject_key(subject)])
    realisation = realise(scenario, streams, duration_min, start_time_of_day_min=start_time_of_day_min)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(
        entropy=int(seed), spawn_key=(subject_key(subject), 0, PERSON_STREAM_ID))))
    meals = []
    for event in sorted(realisation.meals, key=lambda e: e.start_min):
        jitter = config.announce_jitter_min * (2.0 * rng.random() - 1.0)  # drawn for every meal: no shifting
        announced = None if math.isnan(event.carbs_announced_g) else float(event.carbs_announced_g)
        meals.append(PlannedMeal(int(event.start_min), event.name, float(event.carbs_eaten_g), announced,
                                 max(0.0, event.start_min - config.announce_lead_min + jitter)))
    return meals, realisation


class SimulatedPerson:
    """Eats, announces, confirms, rescues; see the module docstring. ``start()`` on a running loop."""

    def __init__(
        self,
        patient: VirtualPatient,
        clock: Any,
        meals: Sequence[PlannedMeal],
        hub_url: str | Callable[[], str | None] | None,
        config: PersonConfig | None = None,
        *,
        eating_rate_g_per_min: float = 5.0,
        pump: Any | None = None,
    ) -> None:
        self.patient = patient
        self.pump = pump  # the PumpModel the person wears (to change its cartridge), if any
        self.clock = clock
        self.meals = sorted(meals, key=lambda m: m.announce_at_min)
        self.config = config or PersonConfig()
        self.eating_rate_g_per_min = eating_rate_g_per_min
        self._hub_url = hub_url if callable(hub_url) else (lambda url=hub_url: url)
        self._client: HubClient | None = None
        self.events: list[PersonEvent] = []
        self.hub_errors = 0
        self._handled_advice: set[int] = set()
        self._failures_seen: set[tuple[str, str]] = set()
        self._task: asyncio.Task[None] | None = None
        self._meals_eaten = False
        self.report_path: Path | None = None
        """If set, :meth:`write_report` writes here (JSON) at start and when the person stops."""

    @classmethod
    def from_scenario(
        cls,
        patient: VirtualPatient,
        clock: Any,
        hub_url: str | Callable[[], str | None] | None,
        *,
        scenario: str | ScenarioSpec = "standard",
        seed: int = 0,
        duration_days: float = 30.0,
        carb_count_error_fraction: float | None = None,
        config: PersonConfig | None = None,
        pump: Any | None = None,
    ) -> SimulatedPerson:
        """A person living ``scenario`` from the clock's start (its time of day places the meals)."""
        from hardware_sim.scenario import scenario_spec, with_changes

        config = config or PersonConfig()
        spec = scenario_spec(scenario) if isinstance(scenario, str) else scenario
        if carb_count_error_fraction is not None:
            spec = with_changes(spec, carb_count_error_fraction=float(carb_count_error_fraction))
        start = clock.start
        tod = start.hour * 60 + start.minute
        meals, realisation = plan_meals(spec, patient.name, seed, max(1, int(duration_days * 1440)), tod, config)
        if spec.sensitivity_drift_sd_per_day > 0 or spec.dawn_amplitude[1] > 0:
            patient.set_scenario_modifiers(realisation.insulin_sensitivity_scale[0], realisation.egp_scale[0])
        return cls(patient, clock, meals, hub_url, config, eating_rate_g_per_min=spec.eating_rate_g_per_min, pump=pump)

    # -- lifetime ---------------------------------------------------------------------------------------------
    def eat_planned_meals(self) -> None:
        """Put every planned meal into the patient at its minute (physiology never waits for the hub)."""
        if not self._meals_eaten:
            for meal in self.meals:
                self.patient.eat(meal.carbs_eaten_g, meal.start_min, rate_g_per_min=self.eating_rate_g_per_min)
            self._meals_eaten = True

    def start(self) -> None:
        self.eat_planned_meals()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(), name="simulated person")
            self._task.add_done_callback(_log_crash)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._client is not None:
            self._client.close()

    async def run(self) -> None:
        """Announce meals when due and look at the hub's advice every few sim minutes, until cancelled."""
        self.eat_planned_meals()
        pending = [m for m in self.meals if m.start_min >= self.clock.now_min()]
        next_poll_min = self.clock.now_min() + self.config.poll_every_min
        loop = asyncio.get_running_loop()
        last_poll_s = -math.inf
        try:
            while True:
                next_meal_min = pending[0].announce_at_min if pending else math.inf
                await self.clock.sleep_until_min(min(next_meal_min, next_poll_min))
                try:
                    if pending and self.clock.now_min() >= pending[0].announce_at_min:
                        await self._announce(pending.pop(0))
                        continue
                    next_poll_min = self.clock.now_min() + self.config.poll_every_min
                    self._look_at_pump()
                    if loop.time() - last_poll_s >= self.config.min_poll_interval_s:
                        last_poll_s = loop.time()
                        await self._look_at_hub()
                except Exception:  # a person does not stop living over one odd answer: log it, go on
                    logger.exception("the simulated person stumbled; carrying on")
        finally:
            summary = self.summary()
            logger.info("person stops: %s", summary)
            print(f"simulated person stops: {json.dumps(summary)}", file=sys.stderr, flush=True)
            with contextlib.suppress(OSError):
                self.write_report()

    # -- actions ----------------------------------------------------------------------------------------------
    def _hub(self) -> HubClient | None:
        url = self._hub_url()
        if not url:
            return None
        if self._client is None or self._client.base_url != url.rstrip("/"):
            self._client = HubClient(url, self.config.http_timeout_s)
        return self._client

    def _note(self, kind: str, *, log: bool = True, **detail: Any) -> None:
        event = PersonEvent(round(self.clock.now_min(), 2), kind, detail)
        self.events.append(event)
        if log:
            logger.log(logging.WARNING if kind == "hub_error" else logging.INFO, "person at minute %.0f: %s %s",
                       event.minute, kind, detail)

    def _hub_failed(self, doing: str, error: Exception) -> None:
        """Count and keep every failure; log a new kind of failure, and a reminder every 50 (the hub may be down
        for hours)."""
        self.hub_errors += 1
        what = (doing.split(" ")[0], str(error)[:40])
        fresh = what not in self._failures_seen
        self._failures_seen.add(what)
        self._note("hub_error", log=fresh or self.hub_errors % 50 == 0, doing=doing, error=str(error),
                   count=self.hub_errors)

    async def _announce(self, meal: PlannedMeal) -> None:
        if meal.carbs_announced_g is None:
            self._note("meal_not_announced", meal=meal.name, carbs_eaten_g=meal.carbs_eaten_g, at_min=meal.start_min)
            return
        hub = self._hub()
        if hub is None:
            self._hub_failed("announce " + meal.name, HubUnavailableError("no hub URL known yet"))
            return
        try:
            advice = await asyncio.to_thread(hub.announce_meal, meal.carbs_announced_g)
        except HubUnavailableError as error:
            self._hub_failed("announce " + meal.name, error)
            return
        self._note("meal_announced", meal=meal.name, carbs_announced_g=meal.carbs_announced_g,
                   carbs_eaten_g=meal.carbs_eaten_g, eats_at_min=meal.start_min, advice=advice.get("summary"))
        advice_id = advice.get("id")
        if isinstance(advice_id, int):
            await self._act_on(advice_id, advice.get("kind"), advice, from_meal=True)

    def _look_at_pump(self) -> None:
        if self.pump is None:
            return
        now = self.clock.now_min()
        self.pump.advance_to(now)
        if self.pump.reservoir_u < self.config.refill_below_u:
            left = self.pump.reservoir_u
            self.pump.refill(self.config.refill_to_u, now)
            self._note("pump_refilled", reservoir_was_u=round(left, 1), reservoir_u=self.config.refill_to_u)

    async def _look_at_hub(self) -> None:
        hub = self._hub()
        if hub is None:
            return
        try:
            status = await asyncio.to_thread(hub.status)
        except HubUnavailableError as error:
            self._hub_failed("read status", error)
            return
        advice = status.get("advice")
        if not isinstance(advice, dict) or advice.get("status", "open") != "open":
            return
        advice_id = advice.get("id")
        if isinstance(advice_id, int) and advice_id not in self._handled_advice:
            payload = advice.get("payload") if isinstance(advice.get("payload"), dict) else {}
            await self._act_on(advice_id, advice.get("kind") or payload.get("kind"), payload, from_meal=False)

    async def _act_on(self, advice_id: int, kind: Any, payload: dict[str, Any], *, from_meal: bool) -> None:
        rescue_g = _number(payload.get("rescue_carbs_g"))
        wants_insulin = _number(payload.get("bolus_u")) > 0 or payload.get("temp_basal_u_per_h") is not None
        if kind == RESCUE_KIND or rescue_g > 0:
            if rescue_g <= 0:
                return
            self._handled_advice.add(advice_id)
            self.patient.eat(rescue_g, self.clock.now_min(), rate_g_per_min=self.config.rescue_rate_g_per_min)
            self._note("rescue_carbs_eaten", carbs_g=rescue_g, recommendation_id=advice_id)
            await self._confirm(advice_id, "rescue carbs")
        elif wants_insulin and (from_meal or self.config.confirm_corrections):
            self._handled_advice.add(advice_id)
            answer = await self._confirm(advice_id, str(kind))
            if answer is not None:
                pump = answer.get("pump") if isinstance(answer.get("pump"), dict) else {}
                self._note("bolus_confirmed" if from_meal else "advice_confirmed", recommendation_id=advice_id,
                           advice_kind=kind, bolus_u=_number(payload.get("bolus_u")),
                           pump_delivered=pump.get("delivered"), pump_error=pump.get("error"))

    async def _confirm(self, advice_id: int, what: str) -> dict[str, Any] | None:
        """The hub's answer, or None when it failed (never retried: the dose may have gone out anyway)."""
        hub = self._hub()
        if hub is None:
            return None
        try:
            return await asyncio.to_thread(hub.confirm, advice_id)
        except HubUnavailableError as error:
            self._hub_failed(f"confirm {what} #{advice_id}", error)
            return None

    def report(self) -> dict[str, Any]:
        """Who the patient is, what the person plans, what happened so far (JSON-ready)."""
        return {
            "patient": self.patient.name,
            "seed": self.patient.seed,
            "therapy": self.patient.therapy(),
            "meals": [m.__dict__ for m in self.meals],
            "summary": self.summary(),
            "events": [{"minute": e.minute, "kind": e.kind, **e.detail} for e in self.events],
        }

    def write_report(self) -> None:
        if self.report_path is None:
            return
        temporary = self.report_path.with_name(self.report_path.name + ".tmp")
        temporary.write_text(json.dumps(self.report(), indent=1, default=str))
        temporary.replace(self.report_path)  # readers never see half a file

    def summary(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for event in self.events:
            counts[event.kind] = counts.get(event.kind, 0) + 1
        history = self.patient.history
        return {"patient": self.patient.name, "minute": self.patient.minute, "events": counts,
                "hub_errors": self.hub_errors,
                "carbs_eaten_g": round(sum(r.carbs_g for r in history), 1),  # so far (meals are planned ahead)
                "insulin_delivered_u": round(sum(r.insulin_u for r in history), 2)}


def _number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) else 0.0


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("the simulated person stopped", exc_info=task.exception())


# -- glucotwin sim serve --patient ---------------------------------------------------------------------------------
def add_patient_arguments(serve: argparse.ArgumentParser) -> None:
    """The ``--patient`` options of ``glucotwin sim serve``."""
    group = serve.add_argument_group("virtual patient (UVA/Padova) and simulated person")
    group.add_argument("--patient", default=None, metavar="NAME",
                       help="drive the CGM and receive the pump's insulin with this subject (e.g. adult#001)")
    group.add_argument("--scenario", default="standard", help="the person's days (default standard; see scenario.py)")
    group.add_argument("--seed", type=int, default=0, help="seed of meals, carb-count errors and sensor noise")
    group.add_argument("--carb-count-error", type=float, default=None, metavar="FRACTION",
                       help="announced carbs off by up to +-FRACTION (default: the scenario's own)")
    group.add_argument("--person-hub-url", default=None, metavar="URL",
                       help="the hub's web API the person uses (e.g. http://127.0.0.1:8080)")
    group.add_argument("--person-hub-url-file", default=None, metavar="FILE",
                       help="read the hub URL from this file once it exists (when the port is known later)")
    group.add_argument("--patient-info-file", default=None, metavar="FILE",
                       help="write the subject's therapy and planned meals here (JSON) before the spec line is "
                            "printed, and the person's events when the simulator stops")
    group.add_argument("--person-days", type=float, default=30.0, help="days of meals to plan (default 30)")
    group.add_argument("--sensor", default=None, choices=("device", "breton2008", "ideal"),
                       help="CGM error model (default device: noise, drift, compression lows)")


def attach_patient(args: argparse.Namespace, clock: Any, devices: Sequence[Any]) -> SimulatedPerson:
    """Put a virtual patient behind the devices ``build_devices`` made, and start the person on the running loop.

    Called by ``hardware_sim.cli.build_devices`` when ``--patient`` is given (inside ``serve``'s event loop), so
    every other ``sim serve`` option (warm-up, dialects, reservoir, faults...) still applies. The CGM's glucose
    source becomes the patient; the pump's insulin goes to the patient and its basal program becomes the
    subject's steady-state basal rate rounded to 0.01 U/h (the pump's history shows that rate change at
    minute 0, as when a clinician programs a new pump).
    """
    from hardware_sim.devices.cgm_sensor import CgmSensorPeripheral
    from hardware_sim.devices.ids_pump import IdsPumpPeripheral
    from hardware_sim.devices.virtual_patient import VirtualPatient

    if getattr(args, "trace", None):
        raise PersonError("--patient and --trace both choose the CGM's glucose: give one")
    start = clock.start
    sensor_preset = None if args.sensor in (None, "device") else args.sensor
    patient = VirtualPatient(args.patient, seed=args.seed, sensor=sensor_preset,
                             start_time_of_day_min=start.hour * 60 + start.minute)
    sensors = [d for d in devices if isinstance(d, CgmSensorPeripheral)]
    pumps = [d for d in devices if isinstance(d, IdsPumpPeripheral)]
    if len(sensors) != 1 or len(pumps) > 1:
        raise PersonError(f"expected one CGM and at most one pump, got {[type(d).__name__ for d in devices]}")
    sensors[0].model.source = patient
    pump_model = None
    if pumps:
        pump_model = pumps[0].model
        pump_model.basal_profile = ((0, patient.pump_basal_u_per_h()),)  # a rate the pump can program
        pump_model.sink = patient
        patient.attach_pump(pump_model)
    hub_url = hub_url_from(args.person_hub_url, args.person_hub_url_file)
    person = SimulatedPerson.from_scenario(patient, clock, hub_url, scenario=args.scenario, seed=args.seed,
                                           duration_days=args.person_days,
                                           carb_count_error_fraction=args.carb_count_error, pump=pump_model)
    if args.patient_info_file:
        person.report_path = Path(args.patient_info_file)
        person.write_report()  # before the spec line: a hub started after it can take the therapy from here
    person.start()
    print(f"virtual patient {patient.name} (seed {args.seed}, scenario {args.scenario}): therapy "
          f"{json.dumps(patient.therapy())}; {len(person.meals)} meals planned over {args.person_days:g} days; "
          f"the person uses the hub at "
          f"{args.person_hub_url or args.person_hub_url_file or '(none: eats, announces nothing)'}",
          file=sys.stderr, flush=True)
    return person
