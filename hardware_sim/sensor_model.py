"""A vectorised CGM sensor: M sensors read M interstitial glucose values every 5 minutes.

What a real CGM adds to interstitial glucose IG (mg/dL), component by component:

1. **Noise** (Breton & Kovatchev 2008, JDST 2:853): additive error ``e = xi + lambda * sinh((eps - gamma) /
   delta)`` (a Johnson SU marginal) where ``eps`` is standard normal with AR(1) correlation 0.7 between samples
   15 min apart. As in the simglucose implementation of that paper, ``eps`` is drawn at 15-min knots and
   interpolated by a cubic spline to the sampling grid, which gives the smooth error of real sensors: with the
   default parameters the error has sd ~12 mg/dL and lag-5-min autocorrelation ~0.95 (measured in
   ``tests/hardware_sim/test_sensor_model.py``; literature ~11.6 mg/dL and ~0.96).
2. **Calibration drift** in the style of Facchinetti et al. 2014 (IEEE TBME 61:620): within a sensor session
   the calibrated signal is ``a(t) * IG + b(t)`` with ``a(t) = a0 + a1 t + a2 t^2`` and ``b(t) = b0 + b1 t +
   b2 t^2`` (t in days since insertion), coefficients drawn per session. The default spreads are chosen to
   give a few percent of gain error after a week; they are illustrative, NOT the paper's fitted values.
3. **Sessions and warm-up**: a sensor lasts ``session_length_d`` days; after each insertion no reading is
   reported for ``warmup_min``. The first sensor of a row is already ``age`` old at time 0, age uniform in
   [warm-up, session length), so every row starts with readings but meets a change within a session length.
4. **Dropouts**: a two-state (Gilbert) Markov chain per sample: a reading is lost with probability
   ``dropout_start_probability`` after a received one and recovers with probability 1/``dropout_mean_samples``.
5. **Compression lows**: at night (``compression_window_h``) a sensor under the sleeping body reads falsely
   low: the signal is multiplied by ``1 - depth * sin^2(pi * s)``, s from 0 to 1 over the event's duration.
   At most one event per night per row, with probability ``compression_probability_per_night``.
6. **Reporting**: readings are rounded to ``quantum_mg_dl`` and clipped to ``[min_mg_dl, max_mg_dl]``
   (40-400 mg/dL: the LO/HI limits of commercial sensors). Missing readings are NaN.

All random draws are made at construction, per row, from that row's own streams
(:class:`hardware_sim.random_streams.RowStreams`), so a row's sensor errors do not depend on the other rows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.interpolate import CubicSpline

from hardware_sim.random_streams import RowStreams

MINUTES_PER_DAY = 1440.0


class SensorModelError(ValueError):
    """Bad sensor parameters or input of the wrong shape."""


@dataclass(frozen=True)
class CgmSensorParameters:
    """Parameters of :class:`CgmSensorArray`; defaults describe a realistic 10-day, 5-min sensor."""

    sample_interval_min: float = 5.0
    # 1. Breton & Kovatchev 2008 noise (simglucose's sensor_params.csv values).
    noise_enabled: bool = True
    johnson_xi_mg_dl: float = -5.471
    johnson_lambda_mg_dl: float = 15.9574
    johnson_gamma: float = -0.5444
    johnson_delta: float = 1.6898
    ar1_coefficient: float = 0.7
    ar1_knot_interval_min: float = 15.0
    # 2. Facchinetti-style drift: sd of the per-session polynomial coefficients (t in days).
    drift_enabled: bool = True
    gain_a0_sd: float = 0.02
    gain_a1_sd_per_d: float = 0.005
    gain_a2_sd_per_d2: float = 0.0005
    offset_b0_sd_mg_dl: float = 2.0
    offset_b1_sd_mg_dl_per_d: float = 0.5
    offset_b2_sd_mg_dl_per_d2: float = 0.05
    # 3. Sessions.
    sessions_enabled: bool = True
    session_length_d: float = 10.0
    warmup_min: float = 120.0
    # 4. Dropouts.
    dropout_start_probability: float = 0.002
    dropout_mean_samples: float = 4.0
    # 5. Compression lows.
    compression_probability_per_night: float = 0.15
    compression_window_h: tuple[float, float] = (0.0, 6.0)
    compression_duration_min: tuple[float, float] = (20.0, 60.0)
    compression_depth_fraction: tuple[float, float] = (0.2, 0.45)
    # 6. Reporting.
    quantum_mg_dl: float = 1.0
    min_mg_dl: float = 40.0
    max_mg_dl: float = 400.0

    def __post_init__(self) -> None:
        checks = {
            "sample_interval_min": self.sample_interval_min > 0,
            "johnson_lambda_mg_dl": self.johnson_lambda_mg_dl > 0,
            "johnson_delta": self.johnson_delta > 0,
            "ar1_coefficient": 0 <= self.ar1_coefficient < 1,
            "ar1_knot_interval_min": self.ar1_knot_interval_min > 0,
            "session_length_d": self.session_length_d * MINUTES_PER_DAY > self.warmup_min >= 0,
            "dropout_start_probability": 0 <= self.dropout_start_probability <= 1,
            "dropout_mean_samples": self.dropout_mean_samples >= 1,
            "compression_probability_per_night": 0 <= self.compression_probability_per_night <= 1,
            "compression_window_h": 0 <= self.compression_window_h[0] < self.compression_window_h[1] <= 24,
            "compression_duration_min": 0 < self.compression_duration_min[0] <= self.compression_duration_min[1],
            "compression_depth_fraction": 0 <= self.compression_depth_fraction[0]
            <= self.compression_depth_fraction[1] < 1,
            "quantum_mg_dl": self.quantum_mg_dl >= 0,
            "min_mg_dl": 0 < self.min_mg_dl < self.max_mg_dl,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise SensorModelError(f"invalid CGM sensor parameters: {', '.join(bad)}")


#: Named sensor presets. "ideal" reports IG itself (rounded and clipped); "breton2008" adds only the noise
#: model of that paper; "realistic" adds drift, sessions with warm-up, dropouts and compression lows.
SENSOR_PRESETS: dict[str, CgmSensorParameters] = {
    "realistic": CgmSensorParameters(),
    "breton2008": CgmSensorParameters(
        drift_enabled=False, sessions_enabled=False, dropout_start_probability=0.0,
        compression_probability_per_night=0.0,
    ),
    "ideal": CgmSensorParameters(
        noise_enabled=False, drift_enabled=False, sessions_enabled=False, dropout_start_probability=0.0,
        compression_probability_per_night=0.0,
    ),
}


def sensor_parameters(preset: str) -> CgmSensorParameters:
    try:
        return SENSOR_PRESETS[preset]
    except KeyError:
        raise SensorModelError(f"unknown sensor preset {preset!r}; known: {sorted(SENSOR_PRESETS)}") from None


def johnson_su(eps: ArrayLike, p: CgmSensorParameters) -> NDArray[np.float64]:
    """Breton & Kovatchev's error transform e = xi + lambda * sinh((eps - gamma) / delta), mg/dL."""
    eps = np.asarray(eps, dtype=float)
    return p.johnson_xi_mg_dl + p.johnson_lambda_mg_dl * np.sinh((eps - p.johnson_gamma) / p.johnson_delta)


def johnson_su_moments(p: CgmSensorParameters) -> tuple[float, float]:
    """Mean and sd (mg/dL) of the Johnson SU error for standard-normal eps (Johnson 1949)."""
    w = np.exp(1.0 / p.johnson_delta**2)
    omega = p.johnson_gamma / p.johnson_delta
    mean = p.johnson_xi_mg_dl - p.johnson_lambda_mg_dl * np.sqrt(w) * np.sinh(omega)
    var = p.johnson_lambda_mg_dl**2 / 2.0 * (w - 1.0) * (w * np.cosh(2.0 * omega) + 1.0)
    return float(mean), float(np.sqrt(var))


class CgmSensorArray:
    """M CGM sensors over ``n_samples`` samples (times ``k * sample_interval_min`` from the trial start).

    ``start_time_of_day_min`` places sample 0 on the clock (compression lows happen at night).
    Read one sample for all rows with :meth:`read`, or a whole (M, n_samples) trace with :meth:`read_trace`.
    """

    def __init__(
        self,
        streams: RowStreams,
        n_samples: int,
        parameters: CgmSensorParameters | str = "realistic",
        *,
        start_time_of_day_min: float = 0.0,
    ) -> None:
        p = sensor_parameters(parameters) if isinstance(parameters, str) else parameters
        if n_samples < 1:
            raise SensorModelError(f"n_samples must be >= 1, got {n_samples}")
        self.parameters = p
        self.n_rows = len(streams)
        self.n_samples = int(n_samples)
        m, n = self.n_rows, self.n_samples
        self.sample_times_min = np.arange(n) * p.sample_interval_min

        self.noise_mg_dl = self._noise(streams, p) if p.noise_enabled else np.zeros((m, n))
        session_start_min, self.session_index = self._sessions(streams, p)
        age_min = self.sample_times_min[None, :] - session_start_min
        self.in_warmup = (age_min < p.warmup_min) if p.sessions_enabled else np.zeros((m, n), dtype=bool)
        self.gain, self.offset_mg_dl = self._drift(streams, p, age_min / MINUTES_PER_DAY)
        self.dropped = self._dropouts(streams, p)
        self.compression_factor = self._compression(streams, p, start_time_of_day_min)
        self.available = ~(self.in_warmup | self.dropped)

    # ---- construction of each error component (all (M, N) arrays) -------------------------------------
    def _noise(self, streams: RowStreams, p: CgmSensorParameters) -> NDArray[np.float64]:
        n_knots = int(np.ceil(self.sample_times_min[-1] / p.ar1_knot_interval_min)) + 2
        knot_times = np.arange(n_knots) * p.ar1_knot_interval_min
        phi = p.ar1_coefficient
        rows = []
        for rng in streams("sensor.noise"):
            v = rng.standard_normal(n_knots)
            eps = np.empty(n_knots)
            eps[0] = v[0]
            for k in range(1, n_knots):  # stationary AR(1) with unit variance
                eps[k] = phi * eps[k - 1] + np.sqrt(1.0 - phi**2) * v[k]
            rows.append(eps)
        knots = np.stack(rows) if rows else np.zeros((0, n_knots))
        eps_samples = CubicSpline(knot_times, knots, axis=1)(self.sample_times_min) if rows else np.zeros(
            (0, self.n_samples))
        return johnson_su(eps_samples, p)

    def _sessions(self, streams: RowStreams, p: CgmSensorParameters) -> tuple[NDArray, NDArray[np.int64]]:
        m, n = self.n_rows, self.n_samples
        if not p.sessions_enabled:
            return np.full((m, 1), -np.inf), np.zeros((m, n), dtype=np.int64)
        length_min = p.session_length_d * MINUTES_PER_DAY
        first_age = np.array([rng.uniform(p.warmup_min, length_min) for rng in streams("sensor.sessions")])
        first_start = -first_age.reshape(m, 1)
        index = np.floor((self.sample_times_min[None, :] - first_start) / length_min).astype(np.int64)
        return first_start + index * length_min, index

    def _drift(self, streams: RowStreams, p: CgmSensorParameters, age_d: NDArray) -> tuple[NDArray, NDArray]:
        m, n = self.n_rows, self.n_samples
        if not p.drift_enabled:
            return np.ones((m, n)), np.zeros((m, n))
        n_sessions = int(self.session_index.max()) + 1 if m else 1
        sds = np.array([p.gain_a0_sd, p.gain_a1_sd_per_d, p.gain_a2_sd_per_d2,
                        p.offset_b0_sd_mg_dl, p.offset_b1_sd_mg_dl_per_d, p.offset_b2_sd_mg_dl_per_d2])
        coefficients = np.stack([rng.standard_normal((n_sessions, 6)) * sds for rng in streams("sensor.drift")])
        c = np.take_along_axis(coefficients, self.session_index[:, :, None], axis=1)  # (M, N, 6)
        t = np.where(np.isfinite(age_d), age_d, self.sample_times_min[None, :] / MINUTES_PER_DAY)
        gain = 1.0 + c[..., 0] + c[..., 1] * t + c[..., 2] * t**2
        offset = c[..., 3] + c[..., 4] * t + c[..., 5] * t**2
        return gain, offset

    def _dropouts(self, streams: RowStreams, p: CgmSensorParameters) -> NDArray[np.bool_]:
        m, n = self.n_rows, self.n_samples
        if p.dropout_start_probability == 0 or m == 0:
            return np.zeros((m, n), dtype=bool)
        u = np.stack([rng.random(n) for rng in streams("sensor.dropouts")])
        recover = 1.0 / p.dropout_mean_samples
        dropped = np.zeros((m, n), dtype=bool)
        state = np.zeros(m, dtype=bool)
        for k in range(n):
            state = np.where(state, u[:, k] >= recover, u[:, k] < p.dropout_start_probability)
            dropped[:, k] = state
        return dropped

    def _compression(self, streams: RowStreams, p: CgmSensorParameters, start_tod_min: float) -> NDArray:
        m, n = self.n_rows, self.n_samples
        factor = np.ones((m, n))
        if p.compression_probability_per_night == 0 or m == 0:
            return factor
        absolute_min = start_tod_min + self.sample_times_min
        n_nights = int(np.ceil(absolute_min[-1] / MINUTES_PER_DAY)) + 1
        draws = np.stack([rng.random((n_nights, 4)) for rng in streams("sensor.compression")])  # (M, D, 4)
        lo_h, hi_h = p.compression_window_h
        for night in range(n_nights):
            happens = draws[:, night, 0] < p.compression_probability_per_night
            start = night * MINUTES_PER_DAY + 60.0 * (lo_h + (hi_h - lo_h) * draws[:, night, 1])
            d_lo, d_hi = p.compression_duration_min
            duration = d_lo + (d_hi - d_lo) * draws[:, night, 2]
            x_lo, x_hi = p.compression_depth_fraction
            depth = x_lo + (x_hi - x_lo) * draws[:, night, 3]
            s = (absolute_min[None, :] - start[:, None]) / duration[:, None]
            inside = happens[:, None] & (s >= 0) & (s <= 1)
            dip = depth[:, None] * np.sin(np.pi * np.clip(s, 0, 1)) ** 2
            factor = np.where(inside, factor * (1.0 - dip), factor)
        return factor

    # ---- reading -----------------------------------------------------------------------------------
    def _report(self, signal_mg_dl: NDArray, available: NDArray[np.bool_]) -> NDArray[np.float64]:
        p = self.parameters
        if p.quantum_mg_dl > 0:
            signal_mg_dl = np.round(signal_mg_dl / p.quantum_mg_dl) * p.quantum_mg_dl
        reading = np.clip(signal_mg_dl, p.min_mg_dl, p.max_mg_dl)
        return np.where(available, reading, np.nan)

    def read(self, sample_index: int, interstitial_glucose_mg_dl: ArrayLike) -> NDArray[np.float64]:
        """Readings (M,) for sample ``sample_index`` of true interstitial glucose (M,); NaN = no reading."""
        ig = np.asarray(interstitial_glucose_mg_dl, dtype=float)
        if ig.shape != (self.n_rows,):
            raise SensorModelError(f"interstitial glucose has shape {ig.shape}, expected ({self.n_rows},)")
        if not 0 <= sample_index < self.n_samples:
            raise SensorModelError(f"sample index {sample_index} outside 0..{self.n_samples - 1}")
        k = sample_index
        signal = (self.gain[:, k] * ig + self.offset_mg_dl[:, k]) * self.compression_factor[:, k]
        return self._report(signal + self.noise_mg_dl[:, k], self.available[:, k])

    def read_trace(self, interstitial_glucose_mg_dl: ArrayLike) -> NDArray[np.float64]:
        """Readings (M, N) of a whole trace of true interstitial glucose (M, N)."""
        ig = np.asarray(interstitial_glucose_mg_dl, dtype=float)
        if ig.shape != (self.n_rows, self.n_samples):
            raise SensorModelError(f"trace has shape {ig.shape}, expected ({self.n_rows}, {self.n_samples})")
        signal = (self.gain * ig + self.offset_mg_dl) * self.compression_factor
        return self._report(signal + self.noise_mg_dl, self.available)

    def with_parameters(self, **changes: object) -> CgmSensorParameters:
        """The parameters with some fields changed (convenience for experiments)."""
        return replace(self.parameters, **changes)  # type: ignore[arg-type]
