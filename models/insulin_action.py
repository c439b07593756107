"""The exponential insulin-action curve used by Loop and OpenAPS, and insulin on board from doses.

For a unit dose given at t = 0, with peak time ``tp`` and duration of action ``td`` (minutes):

    tau = tp * (1 - tp/td) / (1 - 2*tp/td)          time constant
    a   = 2 * tau / td                              rise-time factor
    S   = 1 / (1 - a + (1 + a) * exp(-td/tau))      auxiliary scale factor

    activity(t) = (S / tau^2) * t * (1 - t/td) * exp(-t/tau)                         [1/min]
    IOB(t)      = 1 - S*(1 - a)*((t^2/(tau*td*(1 - a)) - t/tau - 1)*exp(-t/tau) + 1)   [fraction]

for 0 <= t <= td; activity is 0 and IOB is 1 before the dose and 0 after td. activity = -dIOB/dt, and the
activity integrates to 1 over [0, td]. Reference: LoopKit ``ExponentialInsulinModel`` (Loop issue #388,
derivation by Dragan Maksimovic) and oref0 ``lib/iob/calculate.js``; see shared/reference/physiology.md.

Doses are (start minute, units, duration minutes). A bolus has duration 0. A basal *deviation* (temp basal
minus scheduled basal, possibly negative) over [start, start + duration] is a dose of
``deviation_u_per_h * duration / 60`` units delivered uniformly; it is integrated by splitting it into
sub-doses of at most ``DELIVERY_SLICE_MIN`` minutes placed at their midpoints (error well under 1 %).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

DELIVERY_SLICE_MIN = 5.0


class InsulinCurveError(ValueError):
    """The curve's peak and duration are not a valid exponential model (need 0 < 2*tp < td)."""


@dataclass(frozen=True)
class ExponentialInsulinCurve:
    """Loop/OpenAPS exponential insulin action with peak ``peak_min`` and duration ``duration_min``."""

    peak_min: float = 75.0
    duration_min: float = 360.0

    def __post_init__(self) -> None:
        tp, td = float(self.peak_min), float(self.duration_min)
        if not (math.isfinite(tp) and math.isfinite(td)) or tp <= 0 or 2 * tp >= td:
            raise InsulinCurveError(f"need 0 < 2*peak < duration, got peak={tp!r} min, duration={td!r} min")

    @property
    def tau(self) -> float:
        tp, td = self.peak_min, self.duration_min
        return tp * (1 - tp / td) / (1 - 2 * tp / td)

    @property
    def a(self) -> float:
        return 2 * self.tau / self.duration_min

    @property
    def scale(self) -> float:
        return 1 / (1 - self.a + (1 + self.a) * math.exp(-self.duration_min / self.tau))

    def activity(self, t_min: ArrayLike) -> NDArray[np.float64]:
        """Fraction of a unit dose acting per minute, ``t_min`` minutes after the dose (vectorised)."""
        t = np.asarray(t_min, dtype=float)
        tau, td = self.tau, self.duration_min
        inside = (t >= 0) & (t <= td)
        tc = np.clip(t, 0.0, td)
        value = (self.scale / tau**2) * tc * (1 - tc / td) * np.exp(-tc / tau)
        return np.where(inside, value, 0.0)

    def iob_fraction(self, t_min: ArrayLike) -> NDArray[np.float64]:
        """Fraction of a dose still on board ``t_min`` minutes after it (1 before the dose, 0 after td)."""
        t = np.asarray(t_min, dtype=float)
        tau, td, a, s = self.tau, self.duration_min, self.a, self.scale
        tc = np.clip(t, 0.0, td)
        value = 1 - s * (1 - a) * ((tc**2 / (tau * td * (1 - a)) - tc / tau - 1) * np.exp(-tc / tau) + 1)
        value = np.where(t <= 0, 1.0, np.where(t >= td, 0.0, value))
        return np.clip(value, 0.0, 1.0)


INSULIN_PRESETS: dict[str, ExponentialInsulinCurve] = {
    "rapid_adult": ExponentialInsulinCurve(peak_min=75.0, duration_min=360.0),
    "rapid_child": ExponentialInsulinCurve(peak_min=65.0, duration_min=360.0),
    "ultra_rapid": ExponentialInsulinCurve(peak_min=55.0, duration_min=360.0),
}


@dataclass(frozen=True)
class InsulinDose:
    """Insulin given from ``start_min`` over ``duration_min`` (0 for a bolus); units may be negative for a
    basal deviation below the scheduled rate."""

    start_min: float
    units: float
    duration_min: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start_min) and math.isfinite(self.units) and math.isfinite(self.duration_min)):
            raise ValueError(f"insulin dose fields must be finite: {self!r}")
        if self.duration_min < 0:
            raise ValueError(f"insulin dose duration must be >= 0 min, got {self.duration_min!r}")

    @classmethod
    def basal_deviation(
        cls, start_min: float, rate_u_per_h: float, scheduled_u_per_h: float, duration_min: float
    ) -> InsulinDose:
        """A temp basal (or any delivered basal) as a deviation from the scheduled rate."""
        return cls(start_min, (rate_u_per_h - scheduled_u_per_h) * duration_min / 60.0, duration_min)


def _as_impulses(doses: Iterable[InsulinDose]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Doses as impulses (minutes, units): infusions split into slices of at most DELIVERY_SLICE_MIN."""
    times: list[float] = []
    units: list[float] = []
    for dose in doses:
        if dose.duration_min <= 0:
            times.append(dose.start_min)
            units.append(dose.units)
            continue
        n = max(1, math.ceil(dose.duration_min / DELIVERY_SLICE_MIN))
        width = dose.duration_min / n
        for i in range(n):
            times.append(dose.start_min + (i + 0.5) * width)
            units.append(dose.units / n)
    return np.asarray(times, dtype=float), np.asarray(units, dtype=float)


def insulin_on_board_u(
    doses: Sequence[InsulinDose], at_min: ArrayLike, curve: ExponentialInsulinCurve = INSULIN_PRESETS["rapid_adult"]
) -> NDArray[np.float64]:
    """Insulin on board (U) at each of ``at_min``; only the delivered part of an infusion counts."""
    times, units = _as_impulses(doses)
    at = np.atleast_1d(np.asarray(at_min, dtype=float))
    if times.size == 0:
        return np.zeros(at.shape)
    since = at[:, None] - times[None, :]
    delivered = since >= 0  # an impulse not yet given is neither on board nor acting
    return (np.where(delivered, curve.iob_fraction(since), 0.0) * units).sum(axis=1).reshape(at.shape)


def insulin_activity_u_per_min(
    doses: Sequence[InsulinDose], at_min: ArrayLike, curve: ExponentialInsulinCurve = INSULIN_PRESETS["rapid_adult"]
) -> NDArray[np.float64]:
    """Insulin activity (U/min acting) at each of ``at_min``: the sum of every dose's activity."""
    times, units = _as_impulses(doses)
    at = np.atleast_1d(np.asarray(at_min, dtype=float))
    if times.size == 0:
        return np.zeros(at.shape)
    since = at[:, None] - times[None, :]
    return (curve.activity(since) * units).sum(axis=1).reshape(at.shape)
