"""Settings review: findings only with consistent evidence, suggestions bounded, never silent about data gaps."""

from __future__ import annotations

from edge.settings_review import DayEvidence, review_settings
from edge.therapy_settings import TherapySettings

SETTINGS = TherapySettings(age_group="adult", body_weight_kg=70, basal_u_per_h=1.0,
                           insulin_sensitivity_mg_dl_per_u=50, carb_ratio_g_per_u=10)


def days(**series) -> list[DayEvidence]:
    count = max(len(v) for v in series.values())
    return [DayEvidence(f"2026-11-{i + 1:02d}", **{k: v[i] for k, v in series.items()}) for i in range(count)]


def test_consistently_more_sensitive_suggests_higher_isf() -> None:
    review = review_settings(SETTINGS, days(sensitivity_ratio=[1.3, 1.35, 1.25, 1.4, 1.3, 1.28, 1.33]))
    (finding,) = [f for f in review.findings if f.setting == "insulin_sensitivity_mg_dl_per_u"]
    assert finding.direction == "increase" and finding.suggested == 65 and len(finding.days) == 7


def test_noisy_sensitivity_gives_no_finding() -> None:
    review = review_settings(SETTINGS, days(sensitivity_ratio=[1.5, 0.7, 1.4, 0.8, 1.3, 0.75, 1.25]))
    assert not [f for f in review.findings if f.setting.startswith("insulin_sensitivity")]


def test_overnight_rise_suggests_more_basal_capped_at_twenty_percent() -> None:
    review = review_settings(SETTINGS, days(overnight_drift_mg_dl_per_h=[25, 30, 20, 28, 35, 22]))
    (finding,) = [f for f in review.findings if f.setting == "basal_u_per_h"]
    assert finding.suggested == 1.2


def test_meals_running_high_suggest_a_stronger_carb_ratio() -> None:
    review = review_settings(SETTINGS, days(meal_excursions_mg_dl=[(60, 55), (70,), (45, 80), (50,)]))
    (finding,) = [f for f in review.findings if f.setting == "carb_ratio_g_per_u"]
    assert finding.direction == "decrease" and finding.suggested == 9.0


def test_too_little_data_is_said_not_guessed() -> None:
    review = review_settings(SETTINGS, days(sensitivity_ratio=[1.5, 1.6]))
    assert review.findings == ()
    assert any("sensitivity" in note for note in review.notes)
