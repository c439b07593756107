"""The recommender: from the twin's what-if predictions to one bounded, explained piece of advice.

How a dose is proposed (each step's numbers are kept in :attr:`Advice.numbers`):

1. ``no action`` prediction: predicted minimum and eventual glucose with nothing done.
2. Sensitivity used (:mod:`edge.recommend.sensitivity`): for a correction, the configured ISF, or the twin's
   estimate when the twin thinks the person is MORE sensitive (less insulin), at most 1.5x the configured value.
   A twin that thinks the person needs more insulin does not raise doses: that evidence goes to the clinician's
   settings review instead, and :class:`~edge.recommend.twin_predictor.TwinPredictor` never predicts with less
   sensitivity than the settings. Once the hub holds a day of pump history, a correction above target may also
   use the ISF the person's total daily insulin implies (AndroidAPS's dynamic ISF), again only when that means
   less insulin. Meals are judged at the settings' sensitivity: neither belief cuts the bolus carbs / CR
   prescribes.
3. Meal bolus = carbs / CR; correction = (basis - target) / ISF, where the basis is the eventual glucose
   without the meal, which already includes insulin and carbs on board (so IOB is not subtracted twice), but
   never more than the 60-min prediction: a rise the model only extrapolates over hours is not dosed for. A
   negative correction reduces the meal bolus, as bolus calculators do. Without a meal, a correction bolus gives
   :data:`CORRECTION_BOLUS_FRACTION` of the need; the rest follows as a high temp (step 6) only if the coming
   readings still call for it. Meal insulin withheld at a recent meal because glucose was low
   (``HubSnapshot.withheld_meal_bolus_u``, :mod:`edge.recommend.withheld_meal`) is meal insulin for carbs already
   eaten: it is added to the meal part and replaces a correction (both would dose the same rise); only a
   negative correction trims it.
4. The bolus is then reduced (bisection) until the prediction WITH the bolus stays at or above the suspend
   threshold plus a margin (Loop's guard: dose against the predicted trajectory, not the current value) from the
   time the bolus acts on. Where glucose is predicted below that floor even without the bolus (85 mg/dL before a
   meal raises it), the bolus may not lower it further (1 mg/dL tolerance): it may act on the rise that follows
   but never deepen the dip. (Before, this check alone refused any insulin for such a meal.)
5. Hypoglycaemia prevention: if glucose is low, or the no-action prediction falls below the low threshold
   within 60 min. A pump that can suspend is suspended first; when the prediction WITH the suspension stays
   above the low threshold, suspending is the whole advice (no carbs the person does not need: they become
   the next high). Otherwise fast carbs, on top of the suspension, sized like oref0's carbsReq: the deficit of
   the predicted minimum (next 90 min) below the rescue target, divided by the carb sensitivity (ISF / CR),
   rounded up to 5 g; at least 15 g (or half the age group's cap, if smaller) when glucose is already low.
6. Temporary basal (pumps that support it, no meal): suspend on a predicted low; a high temp for a small
   correction need, or for any correction need within the stacking window after a bolus (where the stacking
   guard forbids a correction bolus; Loop and oref0 likewise raise the basal after a meal, re-judged at every
   reading); a low temp when the eventual glucose is below target.
   A meal bolus comes with timing: 15 min before eating when the prediction with the meal eaten then stays safe.
7. Every proposal passes :func:`edge.safety.apply_hard_limits`; the rules that changed it are listed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from ..safety import (
    DoseProposal,
    DosingContext,
    LimitedDose,
    SafetyLimits,
    apply_hard_limits,
    floor_to_increment,
    within_stacking_window,
)
from ..therapy_settings import TherapySettings
from .prediction import HypotheticalAction, PredictedGlucose, Predictor
from .sensitivity import correction_isf_mg_dl_per_u, tdd_isf_mg_dl_per_u, trusted_isf_mg_dl_per_u
from .snapshot import HubSnapshot

LOW_MG_DL = 70.0
HYPO_LOOKAHEAD_MIN = 60.0
RESCUE_TARGET_MG_DL = 80.0
RESCUE_ABSORPTION_MIN = 45.0
RESCUE_ACTS_AFTER_MIN = 30.0
RESCUE_STEP_G = 5.0
LOW_NOW_MIN_CARBS_G = 15.0  # the "15-15 rule" for a low already here
BOLUS_ACTS_AFTER_MIN = 15.0
CORRECTION_NEAR_MIN = 60.0
MIN_SAFETY_MARGIN_MG_DL = 10.0
BOLUS_DIP_TOLERANCE_MG_DL = 1.0  # how far a bolus may lower a point already predicted below the floor
SMALL_CORRECTION_U = 1.0
TEMP_BASAL_DURATION_MIN = 30.0
PRE_BOLUS_MIN = 15.0  # bolus this long before eating when the prediction allows (insulin starts acting first)
CORRECTION_BOLUS_FRACTION = 0.5  # of a correction need given as a bolus at once (no meal announced)


class AdviceKind(StrEnum):
    MEAL_BOLUS = "meal_bolus"
    CORRECTION_BOLUS = "correction_bolus"
    RESCUE_CARBS = "rescue_carbs"
    SUSPEND = "suspend"
    TEMP_BASAL = "temp_basal"
    NO_INSULIN = "no_insulin"
    NO_ADVICE = "no_advice"


@dataclass(frozen=True)
class Advice:
    kind: AdviceKind
    dose: LimitedDose
    summary: str
    reasons: tuple[str, ...]
    numbers: dict[str, Any]
    without: PredictedGlucose | None = None
    with_advice: PredictedGlucose | None = None
    timing: str | None = None
    eat_after_min: float = 0.0  # the pre-bolus advice as a number: start eating this long after the bolus
    limits_applied: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "summary": self.summary,
            "timing": self.timing,
            "eat_after_min": self.eat_after_min,
            "bolus_u": self.dose.bolus_u,
            "meal_bolus_u": self.dose.meal_bolus_u,
            "correction_bolus_u": self.dose.correction_bolus_u,
            "temp_basal_u_per_h": self.dose.temp_basal_u_per_h,
            "temp_basal_duration_min": self.dose.temp_basal_duration_min,
            "rescue_carbs_g": self.dose.rescue_carbs_g,
            "reasons": list(self.reasons),
            "limits_applied": [f"{a.rule}: {a.reason}" for a in self.dose.applied],
            "numbers": self.numbers,
            "without": self.without.to_dict() if self.without else None,
            "with_advice": self.with_advice.to_dict() if self.with_advice else None,
        }


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _value_at(trajectory: PredictedGlucose, minute: float) -> float:
    return float(np.interp(minute, trajectory.minutes, trajectory.mean_mg_dl))


def _largest_safe_bolus(
    predictor: Predictor, bolus_u: float, carbs_g: float, floor_mg_dl: float, increment_u: float,
    without: PredictedGlucose,
) -> float:
    """The largest deliverable bolus (whole increments) <= ``bolus_u`` that keeps the prediction safe (bisection
    over the increments; the advice's own prediction then reuses the last one).

    Safe means: from the time a bolus acts on, every predicted point stays at or above the lower of
    ``floor_mg_dl`` and the prediction ``without`` the bolus less :data:`BOLUS_DIP_TOLERANCE_MG_DL`. Where glucose
    is predicted below the floor anyway (85 mg/dL before a meal raises it), a bolus may not make that dip deeper;
    it may act on the rise that follows it. (The lower of the two, rather than a switch at the floor, keeps "lower
    glucose never means more insulin".) The hard limits still refuse any insulin when the current or predicted
    minimum glucose is below the suspend threshold."""
    steps = round(floor_to_increment(bolus_u, increment_u) / increment_u) if increment_u > 0 else 0
    if steps <= 0:
        return 0.0
    # The next few minutes are already decided by what happened before; a bolus acts after that.
    acting = without.minutes >= BOLUS_ACTS_AFTER_MIN
    lowest_allowed = np.minimum(floor_mg_dl, without.mean_mg_dl[acting] - BOLUS_DIP_TOLERANCE_MG_DL)

    def is_safe(step_count: int) -> bool:
        units = round(step_count * increment_u, 6)
        trajectory = predictor.predict(HypotheticalAction(bolus_u=units, carbs_g=carbs_g,
                                                          at_settings_sensitivity=bool(carbs_g)))
        return bool(np.all(trajectory.mean_mg_dl[acting] >= lowest_allowed))

    if is_safe(steps):
        return round(steps * increment_u, 6)
    low, high = 0, steps  # low is safe (no bolus is, by definition here), high is not
    while high - low > 1:
        middle = (low + high) // 2
        if is_safe(middle):
            low = middle
        else:
            high = middle
    return round(low * increment_u, 6)


def _suspension(temp_basal_u_per_h: float | None) -> dict[str, Any]:
    """The fields of a suspension (rate 0 for 30 min; HypotheticalAction and DoseProposal share their names), or
    none when the pump cannot."""
    if temp_basal_u_per_h is None:
        return {}
    return {"temp_basal_u_per_h": temp_basal_u_per_h, "temp_basal_duration_min": TEMP_BASAL_DURATION_MIN}


def _rescue_carbs_g(predictor: Predictor, settings: TherapySettings, cap_g: float, glucose_mg_dl: float | None,
                    temp_basal_u_per_h: float | None = None) -> tuple[float, dict[str, float], PredictedGlucose]:
    """Fast carbs (5 g steps, 5 g .. ``cap_g``) for the predicted deficit below the rescue target, on top of the
    suspension ``temp_basal_u_per_h`` = 0 when given; returns grams, the numbers behind them and the prediction
    with them."""
    base = predictor.predict(HypotheticalAction(**_suspension(temp_basal_u_per_h)))
    lowest = base.min_mg_dl(RESCUE_ACTS_AFTER_MIN + HYPO_LOOKAHEAD_MIN)
    low_now = _finite(glucose_mg_dl) and glucose_mg_dl < LOW_MG_DL  # type: ignore[operator]
    if low_now:
        lowest = min(lowest, float(glucose_mg_dl))  # type: ignore[arg-type]
    carb_sensitivity = settings.insulin_sensitivity_mg_dl_per_u / settings.carb_ratio_g_per_u  # mg/dL per g
    needed = max(RESCUE_TARGET_MG_DL - lowest, 0.0) / carb_sensitivity
    grams = max(math.ceil(needed / RESCUE_STEP_G - 1e-9) * RESCUE_STEP_G, RESCUE_STEP_G)
    if low_now:
        grams = max(grams, min(LOW_NOW_MIN_CARBS_G, cap_g / 2.0))
    grams = min(grams, max(cap_g, RESCUE_STEP_G))
    trajectory = predictor.predict(HypotheticalAction(carbs_g=grams, carbs_absorption_min=RESCUE_ABSORPTION_MIN,
                                                      **_suspension(temp_basal_u_per_h)))
    return grams, {"rescue_basis_min_mg_dl": round(lowest, 1), "carb_sensitivity_mg_dl_per_g": round(carb_sensitivity, 2),
                   "rescue_carbs_by_deficit_g": round(needed, 1)}, trajectory


def recommend(
    snapshot: HubSnapshot,
    settings: TherapySettings,
    limits: SafetyLimits,
    predictor: Predictor,
    *,
    announced_carbs_g: float = 0.0,
) -> Advice:
    """One piece of advice for now; ``announced_carbs_g`` > 0 asks for a meal bolus."""
    reasons: list[str] = []
    if not _finite(announced_carbs_g) or announced_carbs_g < 0:
        raise ValueError(f"announced carbs must be a finite, non-negative number of grams, not {announced_carbs_g!r}")
    if announced_carbs_g > limits.max_meal_carbs_g:
        raise ValueError(
            f"{announced_carbs_g:g} g is more than the {limits.max_meal_carbs_g:g} g a single meal may announce"
        )
    owed_u = snapshot.withheld_meal_bolus_u
    if not _finite(owed_u) or owed_u < 0:
        raise ValueError(f"withheld meal insulin must be a finite, non-negative number of units, not {owed_u!r}")
    context_base = dict(
        glucose_mg_dl=snapshot.glucose_mg_dl,
        glucose_age_min=snapshot.glucose_age_min,
        iob_u=snapshot.iob_u,
        minutes_since_last_bolus=snapshot.minutes_since_last_bolus,
        scheduled_basal_u_per_h=snapshot.scheduled_basal_u_per_h,
        bolus_increment_u=settings.bolus_increment_u,
        basal_increment_u_per_h=settings.basal_increment_u_per_h,
        cgm_quality=snapshot.cgm_quality,
    )

    try:
        no_action = predictor.predict(HypotheticalAction())
        with_meal = (predictor.predict(HypotheticalAction(carbs_g=announced_carbs_g, at_settings_sensitivity=True))
                     if announced_carbs_g else no_action)
    except Exception as error:  # a predictor failure must never become a dose
        context = DosingContext(predicted_min_glucose_mg_dl=None, **context_base)
        dose = apply_hard_limits(DoseProposal(), context, limits)
        return Advice(AdviceKind.NO_ADVICE, dose, "No advice: the forecast is unavailable.",
                      (f"prediction failed: {error}",), {"error": str(error)})

    isf_configured = settings.insulin_sensitivity_mg_dl_per_u
    isf_twin = snapshot.estimated_isf_mg_dl_per_u
    isf = trusted_isf_mg_dl_per_u(isf_configured, isf_twin)
    cr = settings.carb_ratio_g_per_u
    target = settings.target_mg_dl
    floor = limits.suspend_threshold_mg_dl + MIN_SAFETY_MARGIN_MG_DL

    numbers: dict[str, Any] = {
        "glucose_mg_dl": snapshot.glucose_mg_dl,
        "trend_mg_dl_min": snapshot.trend_mg_dl_min,
        "iob_u": snapshot.iob_u,
        "cob_g": snapshot.cob_g,
        "predicted_min_mg_dl": round(no_action.min_mg_dl(), 1),
        "predicted_min_with_meal_mg_dl": round(with_meal.min_mg_dl(), 1),
        "eventual_mg_dl": round(no_action.eventual_mg_dl, 1),
        "eventual_with_meal_mg_dl": round(with_meal.eventual_mg_dl, 1),
        "isf_used_mg_dl_per_u": isf,
        "isf_configured_mg_dl_per_u": isf_configured,
        "isf_twin_mg_dl_per_u": isf_twin,
        "carb_ratio_g_per_u": cr,
        "target_mg_dl": target,
        "announced_carbs_g": announced_carbs_g,
    }
    context = DosingContext(predicted_min_glucose_mg_dl=with_meal.min_mg_dl(), **context_base)

    glucose = snapshot.glucose_mg_dl
    low_now = _finite(glucose) and glucose < LOW_MG_DL  # type: ignore[operator]
    low_soon = no_action.min_mg_dl(HYPO_LOOKAHEAD_MIN) < LOW_MG_DL
    if (low_now or low_soon) and not announced_carbs_g:
        suspend = 0.0 if snapshot.pump_supports_temp_basal else None
        reasons.append(
            f"glucose {glucose:.0f} mg/dL is low" if low_now else
            f"predicted to fall to {no_action.min_mg_dl(HYPO_LOOKAHEAD_MIN):.0f} mg/dL within {HYPO_LOOKAHEAD_MIN:.0f} min"
        )
        if suspend is not None and not low_now:
            suspended = predictor.predict(HypotheticalAction(**_suspension(suspend)))
            suspended_min_mg_dl = suspended.min_mg_dl(HYPO_LOOKAHEAD_MIN)
            numbers["predicted_min_with_suspension_mg_dl"] = round(suspended_min_mg_dl, 1)
            if suspended_min_mg_dl >= LOW_MG_DL:
                reasons.append(f"suspending basal keeps the prediction at or above {LOW_MG_DL:.0f} mg/dL: no carbs needed")
                dose = apply_hard_limits(DoseProposal(**_suspension(suspend)), context, limits)
                if dose.temp_basal_u_per_h == 0.0:
                    return Advice(AdviceKind.SUSPEND, dose, "Suspend basal for 30 min.", tuple(reasons), numbers,
                                  no_action, suspended)
        grams, rescue_numbers, with_carbs = _rescue_carbs_g(predictor, settings, limits.max_rescue_carbs_g, glucose,
                                                            suspend)
        numbers.update(rescue_numbers)
        reasons.append(f"({RESCUE_TARGET_MG_DL:.0f} - {rescue_numbers['rescue_basis_min_mg_dl']:.0f}) mg/dL / "
                       f"{rescue_numbers['carb_sensitivity_mg_dl_per_g']:g} mg/dL per g = "
                       f"{rescue_numbers['rescue_carbs_by_deficit_g']:.0f} g, given as {grams:.0f} g")
        proposal = DoseProposal(rescue_carbs_g=grams, temp_basal_u_per_h=suspend,
                                temp_basal_duration_min=TEMP_BASAL_DURATION_MIN)
        dose = apply_hard_limits(proposal, context, limits)
        numbers["rescue_carbs_needed_g"] = grams
        if dose.rescue_carbs_g > 0:
            summary = f"Eat {dose.rescue_carbs_g:.0f} g of fast-acting carbs now and recheck in 15 min."
            if dose.temp_basal_u_per_h == 0.0:
                summary += " Suspend basal for 30 min."
            return Advice(AdviceKind.RESCUE_CARBS, dose, summary, tuple(reasons), numbers, no_action, with_carbs)
        return _no_dose_advice(dose, reasons, numbers, no_action)

    # Bolus arithmetic.
    by_ratio_u = announced_carbs_g / cr
    # Dose against the eventual glucose (it includes all insulin on board), but never chase a rise the model only
    # extrapolates beyond an hour: the correction basis is the lower of the eventual and the 60-min prediction.
    near_mg_dl = _value_at(no_action, CORRECTION_NEAR_MIN)
    basis_mg_dl = min(no_action.eventual_mg_dl, near_mg_dl)
    # A correction above target divides by the correction ISF (the TDD-based one when that means less insulin);
    # a negative one, which only trims a meal bolus, by the smaller ISF: the safer of the two either way.
    isf_tdd = tdd_isf_mg_dl_per_u(snapshot.total_daily_insulin_u, glucose)
    isf_correction = correction_isf_mg_dl_per_u(isf, isf_tdd, isf_configured)
    isf_for_basis = isf_correction if basis_mg_dl > target else isf
    correction_u = (basis_mg_dl - target) / isf_for_basis
    numbers.update(isf_used_mg_dl_per_u=isf_for_basis, total_daily_insulin_u=snapshot.total_daily_insulin_u,
                   isf_tdd_mg_dl_per_u=None if isf_tdd is None else round(isf_tdd, 1))
    numbers["correction_basis_mg_dl"] = round(basis_mg_dl, 1)
    if owed_u > 0:
        # Those carbs are eaten and in the prediction; the meal insulin they were owed replaces a correction (both
        # would dose the same rise), and a predicted glucose below target still trims it. A new meal adds to it.
        correction_u = min(correction_u, 0.0)
        numbers["withheld_meal_bolus_u"] = round(owed_u, 3)
        reasons.append(f"{owed_u:.2f} U of meal insulin withheld at the last meal (glucose was low then), "
                       "for carbs already eaten")
    meal_u = by_ratio_u + owed_u
    total_u = max(meal_u + correction_u, 0.0)
    numbers.update(meal_bolus_by_ratio_u=round(by_ratio_u, 3), correction_by_eventual_u=round(correction_u, 3))
    if announced_carbs_g:
        reasons.append(f"{announced_carbs_g:.0f} g / {cr:g} g/U = {by_ratio_u:.2f} U for the meal")
    if correction_u > 0:
        if isf_correction > isf:
            reasons.append(f"ISF {isf_correction:.1f} mg/dL/U from the last 24 h's "
                           f"{snapshot.total_daily_insulin_u:.1f} U of insulin at {glucose:.0f} mg/dL "
                           f"(1800 / (TDD x ln(glucose / 75 + 1))), above the {isf:g} otherwise used: less insulin")
        reasons.append(
            f"predicted {basis_mg_dl:.0f} mg/dL is above target {target:.0f}: "
            f"({basis_mg_dl:.0f} - {target:.0f}) / {isf_for_basis:.1f} = {correction_u:.2f} U"
        )
    elif correction_u < 0 and (announced_carbs_g or owed_u):
        reasons.append(f"predicted {basis_mg_dl:.0f} mg/dL is below target: {correction_u:.2f} U")
    safe_total = _largest_safe_bolus(predictor, total_u, announced_carbs_g, floor, settings.bolus_increment_u,
                                     with_meal)
    if safe_total < total_u - 1e-9:
        reasons.append(f"reduced to {safe_total:.2f} U so the prediction stays above {floor:.0f} mg/dL "
                       "(or, where it is below that anyway, no lower than without the bolus)")
        numbers["reduced_for_predicted_minimum_u"] = round(total_u - safe_total, 3)
    # Split the deliverable total so both parts are whole increments: the limits' rounding then takes nothing
    # more off, and the dose given is the one whose prediction was checked.
    meal_part = floor_to_increment(min(meal_u, safe_total), settings.bolus_increment_u)
    correction_part = round(safe_total - meal_part, 6)

    temp = None
    if snapshot.pump_supports_temp_basal and not announced_carbs_g and not owed_u:
        scheduled = snapshot.scheduled_basal_u_per_h
        # The stacking guard withholds a correction BOLUS this soon after a bolus; a high temp delivers it over
        # 30 min instead, within the temp-basal caps, and is re-judged at every reading.
        stacking = within_stacking_window(snapshot.minutes_since_last_bolus, limits)
        if no_action.min_mg_dl() < floor:
            temp = 0.0
            reasons.append(f"predicted minimum {no_action.min_mg_dl():.0f} mg/dL: suspend basal")
        elif correction_part > 0 and (stacking or correction_part < SMALL_CORRECTION_U):
            temp = scheduled + correction_part * 60.0 / TEMP_BASAL_DURATION_MIN
            why = (f"last bolus {snapshot.minutes_since_last_bolus:.0f} min ago: correction" if stacking
                   else "small correction")
            reasons.append(f"{why} {correction_part:.2f} U given as a temp basal over "
                           f"{TEMP_BASAL_DURATION_MIN:.0f} min")
            correction_part = 0.0
        elif no_action.eventual_mg_dl < target - 20:
            deficit_u = (target - no_action.eventual_mg_dl) / isf
            temp = max(scheduled - deficit_u * 60.0 / TEMP_BASAL_DURATION_MIN, 0.0)
            reasons.append(f"eventual {no_action.eventual_mg_dl:.0f} mg/dL below target: lower basal")
    if not announced_carbs_g and correction_part > 0:
        # A correction bolus delivers part of the need now; the stacking window's high temp delivers the rest if
        # the next readings still call for it (as Loop's and oref0's automatic boluses do, 40-50 %).
        partial = floor_to_increment(correction_part * CORRECTION_BOLUS_FRACTION, settings.bolus_increment_u)
        reasons.append(f"{CORRECTION_BOLUS_FRACTION:.0%} of the {correction_part:.2f} U correction as a bolus now: "
                       f"{partial:.2f} U; the rest only if the coming readings still call for it")
        numbers["correction_held_back_u"] = round(correction_part - partial, 3)
        correction_part = partial
    proposal = DoseProposal(meal_bolus_u=meal_part, correction_bolus_u=correction_part, temp_basal_u_per_h=temp,
                            temp_basal_duration_min=TEMP_BASAL_DURATION_MIN)
    dose = apply_hard_limits(proposal, context, limits)
    with_advice = predictor.predict(HypotheticalAction(
        bolus_u=dose.bolus_u, carbs_g=announced_carbs_g, temp_basal_u_per_h=dose.temp_basal_u_per_h,
        temp_basal_duration_min=dose.temp_basal_duration_min, at_settings_sensitivity=bool(announced_carbs_g)))
    numbers["predicted_min_with_advice_mg_dl"] = round(with_advice.min_mg_dl(), 1)
    numbers["eventual_with_advice_mg_dl"] = round(with_advice.eventual_mg_dl, 1)

    if dose.bolus_u > 0:
        kind = AdviceKind.MEAL_BOLUS if announced_carbs_g or owed_u else AdviceKind.CORRECTION_BOLUS
        meals = (([f"{announced_carbs_g:.0f} g"] if announced_carbs_g else [])
                 + (["the meal eaten earlier"] if owed_u else []))
        summary = f"Bolus {dose.bolus_u:.2f} U" + (" for " + " and ".join(meals) if meals else "")
        timing, eat_after_min = (_pre_bolus_timing(snapshot, predictor, dose.bolus_u, announced_carbs_g, floor)
                                 if announced_carbs_g else (None, 0.0))
        return Advice(kind, dose, summary + ".", tuple(reasons), numbers, with_meal, with_advice, timing,
                      eat_after_min)
    if dose.temp_basal_u_per_h is not None:
        if dose.temp_basal_u_per_h == 0.0:
            return Advice(AdviceKind.SUSPEND, dose, "Suspend basal for 30 min.", tuple(reasons), numbers,
                          no_action, with_advice)
        return Advice(AdviceKind.TEMP_BASAL, dose,
                      f"Temporary basal {dose.temp_basal_u_per_h:.2f} U/h for {dose.temp_basal_duration_min:.0f} min.",
                      tuple(reasons), numbers, no_action, with_advice)
    return _no_dose_advice(dose, reasons, numbers, with_meal)


def _no_dose_advice(dose: LimitedDose, reasons: list[str], numbers: dict[str, Any],
                    trajectory: PredictedGlucose) -> Advice:
    blocked = [a.reason for a in dose.applied]
    if blocked:
        return Advice(AdviceKind.NO_ADVICE if any(a.rule == "require_trustworthy_cgm" for a in dose.applied)
                      else AdviceKind.NO_INSULIN, dose, "No insulin now: " + blocked[0] + ".",
                      tuple(reasons + blocked), numbers, trajectory, None)
    return Advice(AdviceKind.NO_INSULIN, dose, "No insulin needed now.", tuple(reasons), numbers, trajectory, None)


def _pre_bolus_timing(snapshot: HubSnapshot, predictor: Predictor, bolus_u: float, carbs_g: float,
                      floor_mg_dl: float) -> tuple[str, float]:
    """Bolus :data:`PRE_BOLUS_MIN` before eating when that keeps the predicted minimum safe; otherwise at the
    meal. Returns the advice and the wait in minutes."""
    glucose = snapshot.glucose_mg_dl or 0.0
    trend = snapshot.trend_mg_dl_min or 0.0
    if glucose < 100 or trend < -1.0:
        return "Bolus as you start eating (glucose is low-normal or falling).", 0.0
    early = predictor.predict(HypotheticalAction(bolus_u=bolus_u, carbs_g=carbs_g, carbs_delay_min=PRE_BOLUS_MIN,
                                                 at_settings_sensitivity=True))
    if early.min_mg_dl() >= floor_mg_dl:
        return f"Bolus about {PRE_BOLUS_MIN:.0f} min before eating.", PRE_BOLUS_MIN
    return "Bolus as you start eating.", 0.0
