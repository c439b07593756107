"""The GlucoTwin arm: the hub's own twin and recommender, its advice accepted automatically.

Per subject x seed, one :class:`GlucoTwinPolicy` holds a :class:`~models.twin.twin.DigitalTwin` built from the
programmed therapy settings and feeds it ONLY what the observation carries (the same view every arm gets):
CGM readings (NaN = missing), the insulin the pump reports delivering, the announced carbs, and the rescue
carbs this arm itself told the person to eat. It never sees true glucose or what was really eaten.

Each decision (every 5 min):

1. The twin advances over the last interval. The pump reports one total per interval; the part above the
   basal rate that was running is a bolus (given to the twin as an impulse), the rest is basal.
2. :func:`edge.recommend.recommend` runs when it can matter (option (a) of the trial brief, to save time):
   an announced meal, glucose outside 90-160 mg/dL, a predicted low or a high eventual glucose from a cheap
   15-min-old forecast, or a temp basal about to end; otherwise the running temp basal is kept.
3. The advice is accepted: meal and correction boluses, temp basals (None = back to the schedule), rescue
   carbs (at most once per 15 min, "recheck in 15 min"), and the pre-bolus timing: when the advice says "bolus
   about 15 min before eating", the person waits that long before starting the meal (the engine moves the
   meal; no other advice is taken while the meal is pending). ``follow_pre_bolus_timing=False`` eats at once,
   as the peer arms' users do. Carbs the arm eats go back to the engine through
   :class:`~hardware_sim.trial.observation.ArmAction` and into the twin as carbs the hub knows about.
4. Meal insulin withheld because glucose was low at the announcement is owed, as the live hub keeps it
   (:mod:`edge.recommend.withheld_meal`): the recommender is asked again once glucose has recovered, within the
   hour, and every bolus in between counts against it.

The hub's :class:`~edge.therapy_settings.TherapySettings` are built from the programmed settings; values
outside the ranges the hub accepts (four published adults have a correction factor below 10 mg/dL/U) are
clipped to the nearest accepted value, which for the correction factor means LESS correction insulin; the
clipped fields are listed in :attr:`GlucoTwinPolicy.clipped_settings`. Hard limits: ``default_limits(age)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from edge.recommend import AdviceKind, HubSnapshot, recommend
from edge.recommend.prediction import HypotheticalAction
from edge.recommend.twin_predictor import TwinPredictor
from edge.recommend.withheld_meal import WithheldMealBolus, withheld_after_meal_advice
from edge.safety import SafetyLimits, default_limits
from edge.therapy_settings import THERAPY_SETTING_RANGES, TherapySettings
from hardware_sim.trial.observation import ArmAction, ArmObservation, ArmSetup, PerSubjectArm
from models.twin.twin import DigitalTwin, TwinInputError

ARM_NAME = "glucotwin"
BOLUS_THRESHOLD_U = 0.075  # reported insulin beyond the expected basal counted as a bolus (1.5 pump pulses)
BASAL_SLACK_U = 0.1  # pulse timing can put the delivered basal this far behind the expected one
#: Rapid-acting insulin peak by age group (physiology.md: 75 min adult, 65 min child).
INSULIN_PEAK_MIN = {"adult": 75.0, "adolescent": 75.0, "child": 65.0}


@dataclass(frozen=True)
class GlucoTwinArmConfig:
    """When the recommender is consulted, and how the twin is run."""

    target_mg_dl: float = 110.0
    filter_kind: str = "ukf"
    quiet_low_mg_dl: float = 90.0  # between these, with no meal and no predicted problem, skip the recommender
    quiet_high_mg_dl: float = 160.0
    screen_every_min: float = 15.0  # a cheap no-action forecast this often decides whether to consult
    screen_low_mg_dl: float = 85.0
    screen_high_eventual_mg_dl: float = 170.0
    screen_horizon_min: float = 180.0
    screen_samples: int = 16
    rescue_interval_min: float = 15.0
    min_consult_interval_min: float = 0.0  # outside meals, at most one consultation per this many minutes
    always_consult: bool = False  # True: the recommender at every decision (slower; for cost comparisons)
    follow_pre_bolus_timing: bool = True  # the person waits as advised ("bolus 15 min before eating")


#: The live hub's own cadence (edge.agent.pipeline: auto-advice when glucose < 80 or > 200 mg/dL or the 30-min
#: forecast dips below 80, at most every 15 min; meals whenever announced).
PIPELINE_CADENCE = GlucoTwinArmConfig(quiet_low_mg_dl=80.0, quiet_high_mg_dl=200.0, screen_every_min=5.0,
                                      screen_low_mg_dl=80.0, screen_high_eventual_mg_dl=float("inf"),
                                      screen_horizon_min=30.0, min_consult_interval_min=15.0)


def therapy_settings_for(setup: ArmSetup, target_mg_dl: float = 110.0) -> tuple[TherapySettings, tuple[str, ...]]:
    """Hub therapy settings from one row's programmed settings, clipped to the accepted ranges.

    Returns the settings and the names of the fields that had to be clipped."""
    group = setup.age_groups[0]
    wanted = {
        "body_weight_kg": float(setup.body_weight_kg[0]),
        "basal_u_per_h": float(setup.basal_u_per_h[0]),
        "insulin_sensitivity_mg_dl_per_u": float(setup.correction_factor_mg_dl_per_u[0]),
        "carb_ratio_g_per_u": float(setup.carb_ratio_g_per_u[0]),
        "target_mg_dl": float(target_mg_dl),
        "insulin_peak_min": INSULIN_PEAK_MIN.get(group, 75.0),
    }
    clipped = []
    for name, value in list(wanted.items()):
        low, high = THERAPY_SETTING_RANGES[name]
        bounded = min(max(value, low), high)
        if bounded != value:
            clipped.append(name)
            wanted[name] = bounded
    return TherapySettings(age_group=group, **wanted), tuple(clipped)


@dataclass
class _Memory:
    last_time_min: float | None = None
    unexplained_u: float = 0.0  # reported delivery minus the basal the hub expected, not yet counted as a bolus
    last_reading_time_min: float | None = None
    running_rate_u_per_h: float | None = None  # what this arm believes the pump runs (None: schedule)
    temp_until_min: float = -math.inf
    last_bolus_min: float | None = None
    last_rescue_min: float = -math.inf
    carbs_due: list[tuple[float, float]] = field(default_factory=list)  # (decision minute, grams) for the twin
    meal_pending_until_min: float = -math.inf  # bolused, waiting to eat as advised: no other advice until then
    last_screen_min: float = -math.inf
    screen_says_act: bool = True
    consultations: int = 0
    last_consult_min: float = -math.inf
    decisions: int = 0
    advice_kinds: dict[str, int] = field(default_factory=dict)
    withheld_meal: WithheldMealBolus | None = None  # meal insulin withheld (glucose was low), offered later


class GlucoTwinPolicy:
    """One person's hub: twin + recommender, advice accepted automatically."""

    def __init__(self, setup: ArmSetup, config: GlucoTwinArmConfig | None = None) -> None:
        self.config = config or GlucoTwinArmConfig()
        self.settings, self.clipped_settings = therapy_settings_for(setup, self.config.target_mg_dl)
        self.limits: SafetyLimits = default_limits(self.settings.age_group)
        self.twin = DigitalTwin.from_therapy_settings(self.settings, filter_kind=self.config.filter_kind)  # type: ignore[arg-type]
        self.interval_min = float(setup.decision_interval_min)
        self.memory = _Memory()

    # -- the twin's inputs --------------------------------------------------------------------------------------
    def _feed_twin(self, obs: ArmObservation) -> None:
        mem = self.memory
        now = obs.time_min
        scheduled = float(obs.scheduled_basal_u_per_h[0])
        dt = self.interval_min if mem.last_time_min is None else now - mem.last_time_min
        rate = mem.running_rate_u_per_h if mem.running_rate_u_per_h is not None else scheduled
        delivered = float(obs.pump_delivered_u[0, -1]) if mem.last_time_min is not None else 0.0
        delivered = max(delivered, 0.0) if math.isfinite(delivered) else 0.0
        # The pump delivers basal in pulses (0.05 U), so one 5-min total is 0 or 0.05 U at a child's 0.4 U/h:
        # read as a rate, that would swing between 0 and 0.6 U/h and the twin would forecast rises and falls
        # that are not there. The twin gets the basal rate the hub knows is running; what the pump reports
        # beyond it accumulates and counts as a bolus once it exceeds one pulse.
        mem.unexplained_u = max(mem.unexplained_u + delivered - rate * dt / 60.0, -BASAL_SLACK_U)
        bolus_part = 0.0
        if mem.unexplained_u > BOLUS_THRESHOLD_U:
            bolus_part, mem.unexplained_u = mem.unexplained_u, 0.0
        basal_rate = rate
        # Carbs eaten since the previous decision (announced or advised, or a meal whose advised wait is over): the
        # twin gets them now. This decision's announcement is NOT in the twin yet: the recommender is asked "what
        # if I eat this?", as a person asks the hub before eating (counting it in the twin as well would dose the
        # meal twice).
        carbs = sum(grams for due, grams in mem.carbs_due if due <= now)
        mem.carbs_due = [(due, grams) for due, grams in mem.carbs_due if due > now]
        reading = float(obs.cgm_glucose_mg_dl[0, -1])
        glucose = reading if math.isfinite(reading) and 10.0 <= reading <= 1000.0 else None
        try:
            self.estimate = self.twin.update(glucose, now, insulin_u=min(bolus_part, 100.0),
                                             carbs_g=min(carbs, 1000.0), basal_u_per_h=min(basal_rate, 50.0))
        except TwinInputError:
            self.estimate = self.twin.estimate()
        if glucose is not None:
            mem.last_reading_time_min = now
        mem.last_time_min = now

    # -- when to consult ------------------------------------------------------------------------------------
    def _needs_advice(self, obs: ArmObservation, glucose: float | None, carbs_g: float) -> bool:
        cfg, mem = self.config, self.memory
        now = obs.time_min
        if cfg.always_consult or carbs_g > 0:
            return True
        if now - mem.last_consult_min < cfg.min_consult_interval_min:
            return False
        if glucose is None:
            return mem.running_rate_u_per_h is not None  # a temp runs on data that is now missing: re-check
        if glucose < cfg.quiet_low_mg_dl or glucose > cfg.quiet_high_mg_dl:
            return True
        if mem.running_rate_u_per_h is not None and now + self.interval_min >= mem.temp_until_min:
            return True
        if now - mem.last_screen_min >= cfg.screen_every_min:
            mem.last_screen_min = now
            forecast = TwinPredictor(self.twin, horizon_min=cfg.screen_horizon_min, n_samples=cfg.screen_samples,
                                     baseline_basal_u_per_h=float(obs.scheduled_basal_u_per_h[0]))
            trajectory = forecast.predict(HypotheticalAction())
            mem.screen_says_act = (trajectory.min_mg_dl() < cfg.screen_low_mg_dl
                                   or trajectory.eventual_mg_dl > cfg.screen_high_eventual_mg_dl)
        return mem.screen_says_act

    def _snapshot(self, obs: ArmObservation, withheld_meal_bolus_u: float = 0.0) -> HubSnapshot:
        mem = self.memory
        now = obs.time_min
        cgm = obs.cgm_glucose_mg_dl[0]
        times = obs.history_times_min
        latest = float(cgm[-1])
        glucose = latest if math.isfinite(latest) else None
        age = None if mem.last_reading_time_min is None else now - mem.last_reading_time_min
        if glucose is None and mem.last_reading_time_min is not None:
            idx = np.nonzero(np.isfinite(cgm))[0]
            glucose = float(cgm[idx[-1]]) if idx.size else None
        trend = None
        recent = (times >= now - 15.0) & np.isfinite(cgm)
        if recent.sum() >= 2:
            t, g = times[recent], cgm[recent]
            trend = float(np.polyfit(t - now, g, 1)[0])
        est = self.estimate
        isf = est.insulin_sensitivity_factor_mg_dl_per_u.value
        return HubSnapshot(
            glucose_mg_dl=glucose, glucose_age_min=age, trend_mg_dl_min=trend,
            iob_u=est.insulin_on_board_u, cob_g=est.carbs_on_board_g,
            minutes_since_last_bolus=None if mem.last_bolus_min is None else now - mem.last_bolus_min,
            scheduled_basal_u_per_h=float(obs.scheduled_basal_u_per_h[0]),
            estimated_isf_mg_dl_per_u=isf if math.isfinite(isf) else None,
            total_daily_insulin_u=self._total_daily_insulin_u(obs),
            withheld_meal_bolus_u=withheld_meal_bolus_u,
        )

    def _total_daily_insulin_u(self, obs: ArmObservation) -> float | None:
        """What the pump reports delivering over the last 24 h; None before the hub has a day of history (as
        the live hub's pipeline)."""
        delivered = obs.pump_delivered_u[0]
        per_day = int(round(1440.0 / self.interval_min))
        if obs.time_min < 1440.0 or delivered.shape[0] < per_day:
            return None
        return float(np.nansum(delivered[-per_day:]))

    # -- the decision ---------------------------------------------------------------------------------------
    def decide(self, obs: ArmObservation) -> ArmAction:
        cfg, mem = self.config, self.memory
        mem.decisions += 1
        now = obs.time_min
        if mem.running_rate_u_per_h is not None and now >= mem.temp_until_min:
            mem.running_rate_u_per_h = None
        self._feed_twin(obs)
        carbs_g = float(obs.announced_carbs_g[0, -1])
        carbs_g = min(max(carbs_g, 0.0), self.limits.max_meal_carbs_g) if math.isfinite(carbs_g) else 0.0
        latest = float(obs.cgm_glucose_mg_dl[0, -1])
        glucose = latest if math.isfinite(latest) else None
        action = ArmAction.nothing(1)
        if now < mem.meal_pending_until_min and not carbs_g:
            return action  # bolused for a meal the person starts in a few minutes: the meal is the plan
        owed_u = 0.0
        if mem.withheld_meal is not None and (carbs_g or now - mem.last_consult_min >= cfg.min_consult_interval_min):
            owed_u = mem.withheld_meal.owed_now_u(now, glucose, self.limits.suspend_threshold_mg_dl)
        if not owed_u and not self._needs_advice(obs, glucose, carbs_g):  # never true with carbs announced
            return action
        mem.consultations += 1
        mem.last_consult_min = now
        snapshot = self._snapshot(obs, owed_u)
        advice = recommend(snapshot, self.settings, self.limits,
                           TwinPredictor(self.twin, baseline_basal_u_per_h=snapshot.scheduled_basal_u_per_h),
                           announced_carbs_g=carbs_g)
        mem.advice_kinds[advice.kind.value] = mem.advice_kinds.get(advice.kind.value, 0) + 1
        dose = advice.dose
        bolus = dose.bolus_u
        rescue = dose.rescue_carbs_g if advice.kind == AdviceKind.RESCUE_CARBS else 0.0
        if rescue > 0 and now - mem.last_rescue_min < cfg.rescue_interval_min:
            rescue = 0.0  # "recheck in 15 min": the carbs just eaten are still acting
        if rescue > 0:
            mem.last_rescue_min = now
            mem.carbs_due.append((now + self.interval_min, rescue))
        wait = advice.eat_after_min if (cfg.follow_pre_bolus_timing and carbs_g and bolus > 0) else 0.0
        if carbs_g:  # the twin gets the meal at the first decision after eating starts
            mem.carbs_due.append((now + wait + self.interval_min, carbs_g))
        if wait > 0:
            mem.meal_pending_until_min = now + wait
        if carbs_g:
            mem.withheld_meal = withheld_after_meal_advice(carbs_g, self.settings.carb_ratio_g_per_u, bolus, now,
                                                           already_owed_u=owed_u)
        elif mem.withheld_meal is not None and bolus > 0:
            mem.withheld_meal = mem.withheld_meal.after_bolus(bolus)
        if bolus > 0:
            mem.last_bolus_min = now
        if dose.temp_basal_u_per_h is not None:
            rate, duration = float(dose.temp_basal_u_per_h), float(dose.temp_basal_duration_min)
            mem.running_rate_u_per_h, mem.temp_until_min = rate, now + duration
        elif mem.running_rate_u_per_h is not None and advice.kind != AdviceKind.NO_ADVICE:
            rate, duration = 0.0, 0.0  # cancel: back to the programmed schedule
            mem.running_rate_u_per_h, mem.temp_until_min = None, -math.inf
        else:
            rate, duration = math.nan, 0.0  # untrustworthy data: leave the pump as it is
        return ArmAction(np.array([bolus]), np.array([rate]), np.array([duration]), np.array([rescue]),
                         np.array([wait]))


def make_glucotwin_arm(config: GlucoTwinArmConfig | None = None, name: str = ARM_NAME) -> PerSubjectArm:
    """The GlucoTwin arm over any number of rows (one policy per subject x seed)."""
    return PerSubjectArm(name, lambda setup: GlucoTwinPolicy(setup, config))


def make_glucotwin_arm_pipeline_cadence() -> PerSubjectArm:
    """Recommender consulted at the live hub's cadence (:data:`PIPELINE_CADENCE`)."""
    return make_glucotwin_arm(PIPELINE_CADENCE, name="glucotwin-hub-cadence")


def make_glucotwin_arm_eating_at_once() -> PerSubjectArm:
    """Advice followed, but every meal eaten as announced, without the pre-bolus wait (as the peer arms' users
    do): separates what the timing advice adds from what the doses add."""
    return make_glucotwin_arm(GlucoTwinArmConfig(follow_pre_bolus_timing=False), name="glucotwin-eat-at-once")


def make_glucotwin_arm_every_step() -> PerSubjectArm:
    """Recommender consulted at every decision (for cost and sensitivity comparisons)."""
    return make_glucotwin_arm(GlucoTwinArmConfig(always_consult=True), name="glucotwin-every-step")


__all__ = ["ARM_NAME", "GlucoTwinArmConfig", "GlucoTwinPolicy", "make_glucotwin_arm", "make_glucotwin_arm_eating_at_once",
           "make_glucotwin_arm_every_step", "therapy_settings_for"]
