"""A simple synthetic glucose generator for the models' tests (NOT the simulator, NOT the twin's model).

Glucose = start + carb effect (CSF * absorbed grams, piecewise-linear absorption with a longer, unknown
absorption time) - insulin effect (ISF * absorbed units, exponential curve with a different peak) + a slow
sinusoidal drift; the CGM adds a first-order 10-min lag and AR(1) noise. Deliberately different from the MVP
equations, so the twin is tested against a world it does not share its equations with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.carb_absorption import CarbEntry, carbs_absorbed_g
from models.insulin_action import ExponentialInsulinCurve, InsulinDose


@dataclass
class SyntheticTrace:
    minutes: np.ndarray
    true_glucose_mg_dl: np.ndarray
    cgm_mg_dl: np.ndarray
    bolus_u: np.ndarray  # delivered in the 5 min before each reading
    carbs_g: np.ndarray  # announced in the 5 min before each reading
    basal_u_per_h: float
    isf_mg_dl_per_u: float
    carb_ratio_g_per_u: float


def make_trace(
    hours: float = 24.0, seed: int = 0, isf: float = 50.0, carb_ratio: float = 10.0, basal: float = 1.0,
    true_isf_factor: float = 1.0, noise_sd: float = 6.0, meals: tuple[tuple[float, float], ...] = (
        (60, 45), (360, 70), (720, 80), (1080, 30)),
) -> SyntheticTrace:
    rng = np.random.default_rng(seed)
    meals = tuple((t, g) for t, g in meals if t <= hours * 60)
    minutes = np.arange(0.0, hours * 60 + 0.1, 5.0)
    fine = np.arange(0.0, hours * 60 + 0.1, 1.0)
    doses = [InsulinDose(t - 2.5, g / carb_ratio) for t, g in meals]
    entries = [CarbEntry(t - 2.5, g, absorption_min=150) for t, g in meals]
    true_curve = ExponentialInsulinCurve(peak_min=70, duration_min=360)
    absorbed_u = sum(
        np.where(fine >= d.start_min, d.units * (1 - true_curve.iob_fraction(fine - d.start_min)), 0.0) for d in doses
    )
    csf = isf / carb_ratio
    glucose = np.clip(120.0 + csf * carbs_absorbed_g(entries, fine, delay_min=10) - isf * true_isf_factor * absorbed_u
               + 15.0 * np.sin(2 * np.pi * fine / (8 * 60.0)), 30.0, 450.0)
    lagged = np.empty_like(glucose)
    lagged[0] = glucose[0]
    for i in range(1, len(fine)):
        lagged[i] = lagged[i - 1] + (glucose[i - 1] - lagged[i - 1]) / 10.0
    noise = np.zeros(len(minutes))
    for i in range(1, len(minutes)):
        noise[i] = 0.85 * noise[i - 1] + rng.normal(0, noise_sd * np.sqrt(1 - 0.85**2))
    idx = (minutes).astype(int)
    cgm = np.clip(lagged[idx] + noise, 40, 400)
    bolus = np.zeros(len(minutes))
    carbs = np.zeros(len(minutes))
    for (t, g), dose in zip(meals, doses):
        k = int(np.searchsorted(minutes, t))
        bolus[k] += dose.units
        carbs[k] += g
    return SyntheticTrace(minutes, glucose[idx], cgm, bolus, carbs, basal, isf, carb_ratio)
