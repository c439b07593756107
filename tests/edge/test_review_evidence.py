"""Settings-review evidence from a real store: overnight drift, meal excursions, twin sensitivity."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.agent.review import DAY_MS, day_evidence, review_from_store
from edge.store import CarbEntry, HubStore, StoredReading
from edge.therapy_settings import TherapySettings

DAY0 = 1_790_000_000_000 - 1_790_000_000_000 % DAY_MS
SETTINGS = TherapySettings(age_group="adult", body_weight_kg=70, basal_u_per_h=1.0,
                           insulin_sensitivity_mg_dl_per_u=50, carb_ratio_g_per_u=10)


def fill_days(store: HubStore, days: int) -> None:
    for day in range(days):
        start = DAY0 + day * DAY_MS
        for minute in range(0, 1440, 5):
            hour = minute / 60
            glucose = 100 + 20 * hour if hour < 6 else 150  # rises 20 mg/dL/h overnight
            if minute >= 12 * 60:
                glucose = 150 + min(minute - 12 * 60, 180) / 3  # a meal that leaves glucose 60 higher 3 h later
            store.add_reading(StoredReading(f"s{day}", minute, start + minute * 60_000, glucose))
        store.add_carbs(CarbEntry(start + 12 * 3_600_000, 60))
        for hour in range(24):
            store.add_twin_parameters(start + hour * 3_600_000, {"sensitivity_ratio": 1.3})


def test_day_evidence(tmp_path: Path) -> None:
    with HubStore(tmp_path / "hub.sqlite") as store:
        fill_days(store, 1)
        evidence = day_evidence(store, DAY0)
        assert evidence.overnight_drift_mg_dl_per_h == pytest.approx(20, abs=0.5)
        assert evidence.meal_excursions_mg_dl == (pytest.approx(60, abs=5),)
        assert evidence.sensitivity_ratio == pytest.approx(1.3)


def test_review_over_days_finds_all_three(tmp_path: Path) -> None:
    with HubStore(tmp_path / "hub.sqlite") as store:
        fill_days(store, 7)
        review = review_from_store(store, SETTINGS, DAY0 + 7 * DAY_MS + 1000, days=7)
    settings = {finding.setting for finding in review.findings}
    assert settings == {"insulin_sensitivity_mg_dl_per_u", "basal_u_per_h", "carb_ratio_g_per_u"}
