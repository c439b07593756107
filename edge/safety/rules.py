"""Named hard-limit rules applied, in a fixed order, to every dose the recommender proposes.

Each rule is a small pure function ``rule(draft, context, limits) -> (draft, reason | None)``; a reason means
the rule changed the draft, and it is kept with the result so the person sees why. :func:`limit_violations` is an
independent checker of the invariants (written separately from the rules so a bug in one is caught by the other);
:func:`assert_within_limits` raises :class:`SafetyViolation` if any invariant fails and is called on every
result, so a violation can never leave this module silently.

Order matters and is deliberate: sanitise, refuse untrustworthy CGM, refuse insulin on (predicted) lows, guard
against stacking, then cap (bolus, IOB, basal, carbs) and finally round down to the pump's increments (rounding
down never breaks a cap).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from .limits import SafetyLimits

_EPSILON = 1e-9
_MAX_TEMP_BASAL_DURATION_MIN = 120.0
_DEFAULT_TEMP_BASAL_DURATION_MIN = 30.0


class SafetyViolation(AssertionError):
    """A dose left the rules outside a hard limit: a bug. The caller must give no dosing advice."""


@dataclass(frozen=True)
class CgmQuality:
    """What the CGM session knows about the trustworthiness of the latest reading."""

    warming_up: bool = False
    compression_suspected: bool = False
    noisy: bool = False
    sensor_fault: bool = False

    @property
    def problems(self) -> tuple[str, ...]:
        names = ("warming_up", "compression_suspected", "noisy", "sensor_fault")
        return tuple(name for name in names if getattr(self, name))


@dataclass(frozen=True)
class DosingContext:
    """What the rules need to know about now. Unknown values are None and treated conservatively."""

    glucose_mg_dl: float | None
    glucose_age_min: float | None
    predicted_min_glucose_mg_dl: float | None
    iob_u: float | None
    minutes_since_last_bolus: float | None
    scheduled_basal_u_per_h: float
    bolus_increment_u: float = 0.05
    basal_increment_u_per_h: float = 0.05
    cgm_quality: CgmQuality = CgmQuality()


@dataclass(frozen=True)
class DoseProposal:
    """What the recommender would like to advise, before the hard limits."""

    meal_bolus_u: float = 0.0
    correction_bolus_u: float = 0.0
    temp_basal_u_per_h: float | None = None  # None: keep the scheduled basal
    temp_basal_duration_min: float = _DEFAULT_TEMP_BASAL_DURATION_MIN
    rescue_carbs_g: float = 0.0


@dataclass(frozen=True)
class RuleApplication:
    rule: str
    reason: str


@dataclass(frozen=True)
class LimitedDose:
    """A proposal after every hard limit, with the rules that changed it."""

    meal_bolus_u: float
    correction_bolus_u: float
    temp_basal_u_per_h: float | None
    temp_basal_duration_min: float
    rescue_carbs_g: float
    applied: tuple[RuleApplication, ...] = ()

    @property
    def bolus_u(self) -> float:
        return round(self.meal_bolus_u + self.correction_bolus_u, 6)  # no 3.3000000000000003 on a screen


Rule = Callable[[DoseProposal, DosingContext, SafetyLimits], tuple[DoseProposal, str | None]]

_NO_INSULIN = dict(meal_bolus_u=0.0, correction_bolus_u=0.0)


def _finite(value: float | None) -> bool:
    return value is not None and isinstance(value, int | float) and math.isfinite(value)


def _cgm_trust_problems(context: DosingContext, limits: SafetyLimits) -> list[str]:
    problems = list(context.cgm_quality.problems)
    if not _finite(context.glucose_mg_dl):
        problems.append("no current glucose")
    if not _finite(context.glucose_age_min):
        problems.append("reading age unknown")
    elif context.glucose_age_min > limits.max_cgm_age_min:  # type: ignore[operator]
        problems.append(f"reading is {context.glucose_age_min:.0f} min old (limit {limits.max_cgm_age_min:g})")
    elif context.glucose_age_min < -5.0:  # type: ignore[operator]
        problems.append("reading is from the future (clock problem)")
    return problems


def _glucose_low_reasons(context: DosingContext, limits: SafetyLimits) -> list[str]:
    threshold = limits.suspend_threshold_mg_dl
    reasons = []
    if not _finite(context.glucose_mg_dl) or context.glucose_mg_dl < threshold:  # type: ignore[operator]
        reasons.append(f"glucose {context.glucose_mg_dl} mg/dL is below the suspend threshold {threshold:g}")
    if not _finite(context.predicted_min_glucose_mg_dl):
        reasons.append("predicted minimum glucose is unknown")
    elif context.predicted_min_glucose_mg_dl < threshold:  # type: ignore[operator]
        reasons.append(
            f"predicted minimum {context.predicted_min_glucose_mg_dl:.0f} mg/dL is below the suspend threshold "
            f"{threshold:g}"
        )
    return reasons


def _known_iob_u(context: DosingContext) -> float | None:
    """IOB for capping: negative IOB (basal withheld) never buys extra room; unknown IOB buys none."""
    if not _finite(context.iob_u):
        return None
    return max(float(context.iob_u), 0.0)  # type: ignore[arg-type]


def sanitize_proposal(draft: DoseProposal, context: DosingContext, limits: SafetyLimits):
    """Negative, NaN or infinite amounts become zero; an impossible temp basal keeps the schedule."""
    changes: dict[str, float | None] = {}
    for name in ("meal_bolus_u", "correction_bolus_u", "rescue_carbs_g"):
        value = getattr(draft, name)
        if not _finite(value) or value < 0:
            changes[name] = 0.0
    if draft.temp_basal_u_per_h is not None and (
        not _finite(draft.temp_basal_u_per_h) or draft.temp_basal_u_per_h < 0
    ):
        changes["temp_basal_u_per_h"] = None
    duration = draft.temp_basal_duration_min
    if not _finite(duration) or duration <= 0:
        changes["temp_basal_duration_min"] = _DEFAULT_TEMP_BASAL_DURATION_MIN
    elif duration > _MAX_TEMP_BASAL_DURATION_MIN:
        changes["temp_basal_duration_min"] = _MAX_TEMP_BASAL_DURATION_MIN
    if not changes:
        return draft, None
    return replace(draft, **changes), "invalid amounts replaced: " + ", ".join(sorted(changes))


def require_trustworthy_cgm(draft: DoseProposal, context: DosingContext, limits: SafetyLimits):
    """No dosing advice on stale, future, noisy, compressed, warming-up or faulty CGM data."""
    problems = _cgm_trust_problems(context, limits)
    if not problems:
        return draft, None
    cleared = replace(draft, temp_basal_u_per_h=None, rescue_carbs_g=0.0, **_NO_INSULIN)
    if cleared == draft:
        return draft, None
    return cleared, "CGM data not trustworthy (" + "; ".join(problems) + "): no dosing advice, check a fingerstick"


def no_insulin_when_low(draft: DoseProposal, context: DosingContext, limits: SafetyLimits):
    """Current or predicted minimum glucose below the suspend threshold: no bolus, basal suspended."""
    if _cgm_trust_problems(context, limits):
        return draft, None  # already no insulin; nothing trustworthy to suspend on either
    reasons = _glucose_low_reasons(context, limits)
    if not reasons:
        return draft, None
    suspended = replace(draft, temp_basal_u_per_h=0.0, **_NO_INSULIN)
    if suspended == draft:
        return draft, None
    return suspended, "; ".join(reasons) + ": no insulin, suspend basal"


def within_stacking_window(minutes_since_last_bolus: float | None, limits: SafetyLimits) -> bool:
    """True while a bolus given this many minutes ago forbids a correction bolus (None: no bolus known)."""
    since = minutes_since_last_bolus
    return _finite(since) and since < limits.stacking_window_min  # type: ignore[operator]


def insulin_stacking_guard(draft: DoseProposal, context: DosingContext, limits: SafetyLimits):
    """No correction insulin within the stacking window after any bolus (meal insulin is still allowed)."""
    since = context.minutes_since_last_bolus
    if draft.correction_bolus_u <= 0 or not within_stacking_window(since, limits):
        return draft, None
    return replace(draft, correction_bolus_u=0.0), (
        f"last bolus {since:.0f} min ago (< {limits.stacking_window_min:g} min): correction withheld to avoid stacking"
    )


def _cap_bolus(draft: DoseProposal, cap_u: float) -> DoseProposal:
    """Lower the total bolus to ``cap_u``, taking from the correction first, then the meal part."""
    cap_u = max(cap_u, 0.0)
    if draft.meal_bolus_u + draft.correction_bolus_u <= cap_u + _EPSILON:
        return draft
    meal = min(draft.meal_bolus_u, cap_u)
    correction = max(min(draft.correction_bolus_u, cap_u - meal), 0.0)
    return replace(draft, meal_bolus_u=meal, correction_bolus_u=correction)


def cap_bolus_to_max_bolus(draft: DoseProposal, context: DosingContext, limits: SafetyLimits):
    capped = _cap_bolus(draft, limits.max_bolus_u)
    if capped == draft:
        return draft, None
    return capped, f"bolus capped at the maximum bolus {limits.max_bolus_u:g} U"


def cap_bolus_to_max_iob(draft: DoseProposal, context: DosingContext, limits: SafetyLimits):
    iob = _known_iob_u(context)
    room = 0.0 if iob is None else limits.max_iob_u - iob
    capped = _cap_bolus(draft, room)
    if capped == draft:
        return draft, None
    known = "unknown" if iob is None else f"{iob:.2f} U"
    return capped, f"insulin on board {known}: bolus capped to keep IOB within {limits.max_iob_u:g} U"


def max_temp_basal_u_per_h(context: DosingContext, limits: SafetyLimits) -> float:
    """The highest temp basal allowed now: max basal and a multiple of the scheduled rate (oref0's rule)."""
    scheduled = context.scheduled_basal_u_per_h if _finite(context.scheduled_basal_u_per_h) else 0.0
    return max(min(limits.max_basal_u_per_h, limits.max_basal_multiple_of_scheduled * max(scheduled, 0.0)), 0.0)


def cap_temp_basal(draft: DoseProposal, context: DosingContext, limits: SafetyLimits):
    if draft.temp_basal_u_per_h is None:
        return draft, None
    ceiling = max_temp_basal_u_per_h(context, limits)
    if draft.temp_basal_u_per_h <= ceiling + _EPSILON:
        return draft, None
    return replace(draft, temp_basal_u_per_h=ceiling), (
        f"temp basal capped at {ceiling:.2f} U/h (max basal {limits.max_basal_u_per_h:g} U/h, "
        f"{limits.max_basal_multiple_of_scheduled:g}x scheduled)"
    )


def cap_temp_basal_to_max_iob(draft: DoseProposal, context: DosingContext, limits: SafetyLimits):
    """Insulin a high temp adds above the schedule counts towards max IOB, after the bolus."""
    scheduled = max(context.scheduled_basal_u_per_h, 0.0) if _finite(context.scheduled_basal_u_per_h) else 0.0
    if draft.temp_basal_u_per_h is None or draft.temp_basal_u_per_h <= scheduled:
        return draft, None
    iob = _known_iob_u(context)
    room_u = 0.0 if iob is None else limits.max_iob_u - iob - draft.meal_bolus_u - draft.correction_bolus_u
    extra_allowed_u_per_h = max(room_u, 0.0) * 60.0 / draft.temp_basal_duration_min
    ceiling = scheduled + extra_allowed_u_per_h
    if draft.temp_basal_u_per_h <= ceiling + _EPSILON:
        return draft, None
    return replace(draft, temp_basal_u_per_h=ceiling), (
        f"temp basal lowered to {ceiling:.2f} U/h to keep IOB within {limits.max_iob_u:g} U"
    )


def cap_rescue_carbs(draft: DoseProposal, context: DosingContext, limits: SafetyLimits):
    if draft.rescue_carbs_g <= limits.max_rescue_carbs_g:
        return draft, None
    return replace(draft, rescue_carbs_g=limits.max_rescue_carbs_g), (
        f"rescue carbs capped at {limits.max_rescue_carbs_g:g} g (recheck glucose in 15 min)"
    )


def floor_to_increment(value: float, increment: float) -> float:
    """``value`` rounded down to whole ``increment``s (what a pump can deliver); 0 for a non-positive increment."""
    if increment <= 0 or not math.isfinite(increment):
        return 0.0
    steps = math.floor(value / increment + _EPSILON)
    return round(max(steps, 0) * increment, 6)


def round_down_to_pump_increments(draft: DoseProposal, context: DosingContext, limits: SafetyLimits):
    """Round amounts down to what the pump can deliver; rounding down never breaks a cap."""
    meal = floor_to_increment(draft.meal_bolus_u, context.bolus_increment_u)
    correction = floor_to_increment(draft.correction_bolus_u, context.bolus_increment_u)
    temp = draft.temp_basal_u_per_h
    if temp is not None:
        temp = floor_to_increment(temp, context.basal_increment_u_per_h)
    carbs = float(math.floor(draft.rescue_carbs_g + _EPSILON))
    rounded = replace(
        draft, meal_bolus_u=meal, correction_bolus_u=correction, temp_basal_u_per_h=temp, rescue_carbs_g=carbs
    )
    # Rounding is not a safety intervention worth telling the person about.
    return rounded, None


RULES: tuple[Rule, ...] = (
    sanitize_proposal,
    require_trustworthy_cgm,
    no_insulin_when_low,
    insulin_stacking_guard,
    cap_bolus_to_max_bolus,
    cap_bolus_to_max_iob,
    cap_temp_basal,
    cap_temp_basal_to_max_iob,
    cap_rescue_carbs,
    round_down_to_pump_increments,
)


def apply_hard_limits(proposal: DoseProposal, context: DosingContext, limits: SafetyLimits) -> LimitedDose:
    """Run every rule in order; the result is checked by :func:`assert_within_limits` before it is returned."""
    draft = proposal
    applied: list[RuleApplication] = []
    for rule in RULES:
        draft, reason = rule(draft, context, limits)
        if reason is not None:
            applied.append(RuleApplication(rule.__name__, reason))
    result = LimitedDose(
        meal_bolus_u=draft.meal_bolus_u,
        correction_bolus_u=draft.correction_bolus_u,
        temp_basal_u_per_h=draft.temp_basal_u_per_h,
        temp_basal_duration_min=draft.temp_basal_duration_min,
        rescue_carbs_g=draft.rescue_carbs_g,
        applied=tuple(applied),
    )
    assert_within_limits(result, context, limits)
    return result


def limit_violations(dose: LimitedDose, context: DosingContext, limits: SafetyLimits) -> list[str]:
    """Every hard limit the dose breaks, checked independently of the rules above."""
    violations: list[str] = []
    amounts = {
        "meal_bolus_u": dose.meal_bolus_u,
        "correction_bolus_u": dose.correction_bolus_u,
        "rescue_carbs_g": dose.rescue_carbs_g,
        "temp_basal_duration_min": dose.temp_basal_duration_min,
    }
    if dose.temp_basal_u_per_h is not None:
        amounts["temp_basal_u_per_h"] = dose.temp_basal_u_per_h
    for name, value in amounts.items():
        if not _finite(value) or value < 0:
            violations.append(f"{name}={value} is not a finite, non-negative amount")
    if violations:
        return violations
    bolus = dose.bolus_u
    if bolus > limits.max_bolus_u + _EPSILON:
        violations.append(f"bolus {bolus} U exceeds max bolus {limits.max_bolus_u} U")
    iob = _known_iob_u(context)
    if bolus > _EPSILON and (iob is None or iob + bolus > limits.max_iob_u + _EPSILON):
        violations.append(f"bolus {bolus} U with IOB {context.iob_u} exceeds max IOB {limits.max_iob_u} U")
    if dose.rescue_carbs_g > limits.max_rescue_carbs_g + _EPSILON:
        violations.append(f"rescue carbs {dose.rescue_carbs_g} g exceed {limits.max_rescue_carbs_g} g")
    if dose.temp_basal_duration_min > _MAX_TEMP_BASAL_DURATION_MIN:
        violations.append(f"temp basal lasts {dose.temp_basal_duration_min} min")
    temp = dose.temp_basal_u_per_h
    if temp is not None:
        if temp > max_temp_basal_u_per_h(context, limits) + _EPSILON:
            violations.append(f"temp basal {temp} U/h exceeds {max_temp_basal_u_per_h(context, limits)} U/h")
        scheduled = max(context.scheduled_basal_u_per_h, 0.0) if _finite(context.scheduled_basal_u_per_h) else 0.0
        extra_u = max(temp - scheduled, 0.0) * dose.temp_basal_duration_min / 60.0
        if extra_u > _EPSILON and (iob is None or iob + bolus + extra_u > limits.max_iob_u + 1e-6):
            violations.append(f"temp basal adds {extra_u:.3f} U beyond max IOB {limits.max_iob_u} U")
    if _cgm_trust_problems(context, limits):
        if bolus > 0 or temp is not None or dose.rescue_carbs_g > 0:
            violations.append("dosing advice given on untrustworthy CGM data")
    elif _glucose_low_reasons(context, limits):
        if bolus > 0:
            violations.append("insulin advised while glucose or its predicted minimum is below the threshold")
        if temp is None or temp > 0:
            violations.append("basal not suspended while glucose or its predicted minimum is below the threshold")
    since = context.minutes_since_last_bolus
    if dose.correction_bolus_u > 0 and _finite(since) and since < limits.stacking_window_min:  # type: ignore[operator]
        violations.append(f"correction given {since} min after a bolus (stacking window {limits.stacking_window_min})")
    for name, value, increment in (
        ("meal_bolus_u", dose.meal_bolus_u, context.bolus_increment_u),
        ("correction_bolus_u", dose.correction_bolus_u, context.bolus_increment_u),
    ):
        if not (_finite(increment) and increment > 0):
            if value > 0:
                violations.append(f"{name}={value} with no valid pump increment")
        elif value > 0 and abs(value / increment - round(value / increment)) > 1e-6:
            violations.append(f"{name}={value} is not a multiple of the pump increment {increment}")
    return violations


def assert_within_limits(dose: LimitedDose, context: DosingContext, limits: SafetyLimits) -> None:
    violations = limit_violations(dose, context, limits)
    if violations:
        raise SafetyViolation("; ".join(violations))
