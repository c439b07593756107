"""Settings review for the clinician: does the evidence of recent days say ISF, carb ratio or basal drifted?

Never applied automatically: each finding carries the days and numbers behind it, and a suggested value the
clinician may accept. Rules (each needs at least ``MIN_DAYS`` days of data, deliberately conservative):

* Insulin sensitivity: the twin's daily sensitivity ratio (SI / SI at the configured ISF). When the median over
  the window is beyond +-20 % and at least 75 % of days agree in direction, suggest ISF x median ratio.
* Basal: overnight (00:00-06:00) glucose drift on nights with no carbs and no bolus in the previous 4 h. When the
  median drift is beyond +-10 mg/dL/h on at least 60 % of nights, suggest basal + drift / ISF (at most +-20 %).
* Carb ratio: the rise from the pre-meal value to 3 h after announced meals. When the median 3-h excursion is
  above +40 mg/dL (CR too weak) or below -30 mg/dL (too strong) on at least 60 % of meals, suggest CR -/+ 10 %.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from .therapy_settings import TherapySettings

MIN_DAYS = 5


@dataclass(frozen=True)
class DayEvidence:
    """What one day contributes. Any item may be None when that day had no usable data for it."""

    day: str
    sensitivity_ratio: float | None = None
    overnight_drift_mg_dl_per_h: float | None = None
    meal_excursions_mg_dl: tuple[float, ...] = ()


@dataclass(frozen=True)
class Finding:
    setting: str
    direction: str  # "increase" or "decrease"
    current: float
    suggested: float
    unit: str
    evidence: str
    days: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class SettingsReview:
    findings: tuple[Finding, ...]
    days_reviewed: int
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "days_reviewed": self.days_reviewed,
            "notes": list(self.notes),
            "findings": [finding.__dict__ | {"days": list(finding.days)} for finding in self.findings],
        }


def _share(values: list[float], predicate) -> float:  # type: ignore[no-untyped-def]
    return sum(1 for value in values if predicate(value)) / len(values) if values else 0.0


def review_settings(settings: TherapySettings, days: list[DayEvidence]) -> SettingsReview:
    findings: list[Finding] = []
    notes: list[str] = []

    ratio_days = [d for d in days if d.sensitivity_ratio is not None and d.sensitivity_ratio > 0]
    ratios = [float(d.sensitivity_ratio) for d in ratio_days]  # type: ignore[arg-type]
    if len(ratios) >= MIN_DAYS:
        median = statistics.median(ratios)
        if median > 1.2 and _share(ratios, lambda r: r > 1.0) >= 0.75:
            findings.append(Finding(
                "insulin_sensitivity_mg_dl_per_u", "increase", settings.insulin_sensitivity_mg_dl_per_u,
                round(settings.insulin_sensitivity_mg_dl_per_u * min(median, 1.5)), "mg/dL/U",
                f"twin estimates {median:.2f}x the configured sensitivity (median of {len(ratios)} days)",
                tuple(d.day for d in ratio_days)))
        elif median < 0.8 and _share(ratios, lambda r: r < 1.0) >= 0.75:
            findings.append(Finding(
                "insulin_sensitivity_mg_dl_per_u", "decrease", settings.insulin_sensitivity_mg_dl_per_u,
                round(settings.insulin_sensitivity_mg_dl_per_u * max(median, 0.67)), "mg/dL/U",
                f"twin estimates {median:.2f}x the configured sensitivity (median of {len(ratios)} days)",
                tuple(d.day for d in ratio_days)))
    else:
        notes.append(f"sensitivity: {len(ratios)} day(s) of estimates, {MIN_DAYS} needed")

    drift_days = [d for d in days if d.overnight_drift_mg_dl_per_h is not None]
    drifts = [float(d.overnight_drift_mg_dl_per_h) for d in drift_days]  # type: ignore[arg-type]
    if len(drifts) >= MIN_DAYS:
        median = statistics.median(drifts)
        basal = settings.basal_u_per_h
        change = median / settings.insulin_sensitivity_mg_dl_per_u
        change = max(min(change, 0.2 * basal), -0.2 * basal)
        if median > 10 and _share(drifts, lambda v: v > 10) >= 0.6:
            findings.append(Finding("basal_u_per_h", "increase", basal, round(basal + change, 2), "U/h",
                                    f"overnight glucose rises {median:.0f} mg/dL/h (median of {len(drifts)} nights)",
                                    tuple(d.day for d in drift_days)))
        elif median < -10 and _share(drifts, lambda v: v < -10) >= 0.6:
            findings.append(Finding("basal_u_per_h", "decrease", basal, round(basal + change, 2), "U/h",
                                    f"overnight glucose falls {-median:.0f} mg/dL/h (median of {len(drifts)} nights)",
                                    tuple(d.day for d in drift_days)))
    else:
        notes.append(f"basal: {len(drifts)} usable night(s), {MIN_DAYS} needed")

    meal_days = [d for d in days if d.meal_excursions_mg_dl]
    excursions = [float(e) for d in meal_days for e in d.meal_excursions_mg_dl]
    if len(excursions) >= MIN_DAYS:
        median = statistics.median(excursions)
        cr = settings.carb_ratio_g_per_u
        if median > 40 and _share(excursions, lambda v: v > 40) >= 0.6:
            findings.append(Finding("carb_ratio_g_per_u", "decrease", cr, round(cr * 0.9, 1), "g/U",
                                    f"glucose 3 h after meals is {median:+.0f} mg/dL from before (median of "
                                    f"{len(excursions)} meals)", tuple(d.day for d in meal_days)))
        elif median < -30 and _share(excursions, lambda v: v < -30) >= 0.6:
            findings.append(Finding("carb_ratio_g_per_u", "increase", cr, round(cr * 1.1, 1), "g/U",
                                    f"glucose 3 h after meals is {median:+.0f} mg/dL from before (median of "
                                    f"{len(excursions)} meals)", tuple(d.day for d in meal_days)))
    else:
        notes.append(f"carb ratio: {len(excursions)} meal(s), {MIN_DAYS} needed")
    return SettingsReview(tuple(findings), len(days), tuple(notes))
