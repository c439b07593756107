"""Kalman filters for the MVP twin: an unscented (UKF) and an extended (EKF) filter on filterpy 2.

Both estimate the 10-state MVP vector (``mvp_model.STATE_NAMES``) from CGM readings
z = Gsc + noise + v, v ~ N(0, R). The measurement is linear, H = e_Gsc + e_noise; the nonlinearity is in
the dynamics (Ieff*G and SI*exp(theta)*Ip).

* UKF (``filterpy.kalman.UnscentedKalmanFilter``, Merwe scaled sigma points, 2n+1 = 21 points): propagates the
  sigma points through the full nonlinear step, so exp(theta) and the bilinear terms keep their skew; the
  sigma points are propagated in one vectorised call (``compute_process_sigmas`` is overridden).
* EKF (``filterpy.kalman.ExtendedKalmanFilter``): x through the nonlinear Euler step, P through
  F = prod(I + h*J) from the analytic Jacobian; cheaper per step (see tests/models/test_bench_twin.py).

The UKF is the default: with readings every 5 min either cost is negligible on a Pi-class hub, and the
UKF handles the log-sensitivity state without linearisation error. The EKF is kept as the measured baseline.
Measured per reading (tests/models/test_bench_twin.py, 2 shared cores at load ~9, min / p50 / p99):
EKF 0.26 / 0.36 / 5.4 ms; UKF vectorised 0.54 / 0.71 / 9.3 ms; UKF RK4 0.93 / 1.15 / 9.7 ms; UKF with
filterpy's own per-sigma-point loop 2.2 / 3.9 / 22.9 ms (p99 is dominated by the other jobs on the machine). On 30 UVA/Padova subjects x 3 days (hardware_sim cohort and sensor) the UKF and EKF
twins forecast equally well (RMSE within 0.5 mg/dL at 30/60/120 min), so the EKF is a safe cheaper switch.

Process noise is given per minute and scaled by the step length (a random-walk approximation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from models.twin.lean_filterpy import ExtendedKalmanFilter, MerweScaledSigmaPoints, UnscentedKalmanFilter
from numpy.typing import NDArray

from models.twin import mvp_model as mvp
from models.twin.mvp_model import D1, DIST, G, GSC, IP, ISC, N_STATES, NOISE, THETA, MVPParameters

FilterKind = Literal["ukf", "ekf"]

# Process-noise variances per minute (state units^2 / min). The physiology reference's per-5-min
# Q = diag[5, 5, 1e-5, 1e-5, 1e-9, 25, 0.5, 0.05^2] was the starting point; with the disturbance and
# sensor-noise states carrying unannounced meals and CGM error, the glucose noise is smaller.
Q_PER_MIN_DEFAULT = np.array([
    0.2,      # D1 g^2
    0.2,      # D2 g^2
    2e-6,     # Isc
    2e-6,     # Ip
    2e-10,    # Ieff
    0.5,      # G (mg/dL)^2
    0.05,     # Gsc
    1e-5,     # theta: sd ~0.12 over a day
    0.002,    # dist (mg/dL/min)^2: stationary sd ~0.42 with tau 180 min
    3.2,      # noise: stationary sd 8 mg/dL with tau 40 min
])
R_DEFAULT_MG_DL2 = 3.0**2
H_MEASUREMENT = np.zeros((1, N_STATES))
H_MEASUREMENT[0, GSC] = 1.0
H_MEASUREMENT[0, NOISE] = 1.0


def initial_covariance(glucose_sd_mg_dl: float = 15.0, theta_sd: float = 0.3) -> NDArray[np.float64]:
    """A wide prior: the meal and disturbance states unknown, sensitivity within ~35 % of the settings."""
    return np.diag([
        4.0, 4.0, 1e-3, 1e-3, 1e-7, glucose_sd_mg_dl**2, glucose_sd_mg_dl**2, theta_sd**2, 0.5**2, 6.0**2,
    ])


def _symmetrise(P: NDArray[np.float64]) -> NDArray[np.float64]:
    P = 0.5 * (P + P.T)
    # keep the covariance positive definite after clipping in the dynamics (tiny jitter only)
    P[np.diag_indices_from(P)] = np.maximum(np.diag(P), 1e-12)
    return P


@dataclass
class Innovation:
    """Measurement residual y = z - H x_prior and its variance S = H P H' + R."""

    residual_mg_dl: float
    variance_mg_dl2: float

    @property
    def normalised(self) -> float:
        return self.residual_mg_dl / math.sqrt(self.variance_mg_dl2)


class _VectorisedUKF(UnscentedKalmanFilter):
    """filterpy's UKF with the process model applied to all sigma points at once."""

    def compute_process_sigmas(self, dt, fx=None, **fx_args):  # type: ignore[no-untyped-def]
        fx = self.fx if fx is None else fx
        sigmas = self.points_fn.sigma_points(self.x, self.P)
        self.sigmas_f = fx(sigmas, dt, **fx_args)


class MVPFilter:
    """One filter over the MVP state: ``predict`` with inputs, then ``update`` with a CGM reading or not."""

    def __init__(
        self, params: MVPParameters, x0: NDArray[np.float64], P0: NDArray[np.float64], kind: FilterKind = "ukf",
        q_per_min: NDArray[np.float64] | None = None, r_mg_dl2: float = R_DEFAULT_MG_DL2, substep_min: float = 1.0,
        integrator: str = "euler", vectorised_sigmas: bool = True,
    ) -> None:
        if kind not in ("ukf", "ekf"):
            raise ValueError(f"unknown filter kind {kind!r} (ukf or ekf)")
        self.kind: FilterKind = kind
        self.params = params
        self.q_per_min = np.array(Q_PER_MIN_DEFAULT if q_per_min is None else q_per_min, dtype=float)
        self.r_mg_dl2 = float(r_mg_dl2)
        self.substep_min = float(substep_min)
        self.integrator = integrator
        if kind == "ukf":
            points = MerweScaledSigmaPoints(N_STATES, alpha=0.5, beta=2.0, kappa=0.0)
            if vectorised_sigmas:
                self._ukf = _VectorisedUKF(
                    dim_x=N_STATES, dim_z=1, dt=5.0, hx=self._hx, fx=self._fx_batch, points=points,
                )
            else:  # filterpy's own loop over sigma points (kept as a measured baseline)
                self._ukf = UnscentedKalmanFilter(
                    dim_x=N_STATES, dim_z=1, dt=5.0, hx=self._hx, fx=self._fx_batch, points=points,
                )
            self._ukf.R = np.array([[self.r_mg_dl2]])
        else:
            self._ekf = ExtendedKalmanFilter(dim_x=N_STATES, dim_z=1)
            self._ekf.R = np.array([[self.r_mg_dl2]])
        self.set_state(x0, P0)

    # -- state access ---------------------------------------------------------------------------------------
    @property
    def _core(self) -> UnscentedKalmanFilter | ExtendedKalmanFilter:
        return self._ukf if self.kind == "ukf" else self._ekf

    @property
    def x(self) -> NDArray[np.float64]:
        return np.asarray(self._core.x, dtype=float).reshape(N_STATES)

    @property
    def P(self) -> NDArray[np.float64]:
        return np.asarray(self._core.P, dtype=float)

    def set_state(self, x: NDArray[np.float64], P: NDArray[np.float64]) -> None:
        x = np.asarray(x, dtype=float).reshape(N_STATES).copy()
        P = _symmetrise(np.asarray(P, dtype=float).reshape(N_STATES, N_STATES).copy())
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(P))):
            raise ValueError("filter state must be finite")
        self._core.x = x
        self._core.P = P

    # -- model functions ------------------------------------------------------------------------------------
    def _fx_batch(self, sigmas: NDArray[np.float64], dt: float, insulin_mu_per_min: float = 0.0,
                  carbs_g_per_min: float = 0.0) -> NDArray[np.float64]:
        return mvp.step(sigmas, float(dt), self.params, float(insulin_mu_per_min), float(carbs_g_per_min),
                        self.substep_min, self.integrator)

    @staticmethod
    def _hx(x: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.array([float(x[GSC]) + float(x[NOISE])])

    # -- filter steps ---------------------------------------------------------------------------------------
    def add_impulse(self, insulin_u: float = 0.0, carbs_g: float = 0.0, carb_count_cv: float = 0.2) -> None:
        """Add a bolus to Isc and announced carbs to D1, with the carb-count uncertainty on D1's variance."""
        x, P = self.x, self.P
        p = self.params
        x[ISC] += insulin_u * 1000.0 / (p.t1_min * p.ci_dl_per_min)
        x[D1] += carbs_g
        P[D1, D1] += (carb_count_cv * carbs_g) ** 2
        self.set_state(x, P)

    def predict(self, dt_min: float, insulin_mu_per_min: float) -> None:
        """Propagate over ``dt_min`` with a constant insulin infusion (mU/min)."""
        dt_min = float(dt_min)
        Q = np.diag(self.q_per_min * max(dt_min, 0.0))
        if self.kind == "ukf":
            self._ukf.Q = Q
            self._ukf.predict(dt=dt_min, insulin_mu_per_min=float(insulin_mu_per_min))
            self._ukf.P = _symmetrise(self._ukf.P)
        else:
            x, F = mvp.step_with_jacobian(self.x, dt_min, self.params, float(insulin_mu_per_min), 0.0, self.substep_min)
            self._ekf.x = x
            self._ekf.P = _symmetrise(F @ self._ekf.P @ F.T + Q)

    def innovation(self, glucose_mg_dl: float) -> Innovation:
        """Residual of a reading against the current prior, without changing the state."""
        H = H_MEASUREMENT
        y = float(glucose_mg_dl) - float((H @ self.x)[0])
        s = float((H @ self.P @ H.T)[0, 0]) + self.r_mg_dl2
        return Innovation(y, s)

    def update(self, glucose_mg_dl: float) -> None:
        z = np.array([float(glucose_mg_dl)])
        if self.kind == "ukf":
            # after predict filterpy redraws sigma points from the prior; if the prior was changed since
            # (impulses, inflation), redraw them so the update uses the current (x, P).
            self._ukf.sigmas_f = self._ukf.points_fn.sigma_points(self._ukf.x, self._ukf.P)
            self._ukf.update(z)
            self._ukf.P = _symmetrise(self._ukf.P)
        else:
            self._ekf.update(z, HJacobian=lambda _x: H_MEASUREMENT, Hx=lambda s: H_MEASUREMENT @ s)
            self._ekf.P = _symmetrise(self._ekf.P)
        x = self.x
        x[G] = min(max(x[G], mvp.GLUCOSE_FLOOR_MG_DL), mvp.GLUCOSE_CEILING_MG_DL)
        x[GSC] = min(max(x[GSC], mvp.GLUCOSE_FLOOR_MG_DL), mvp.GLUCOSE_CEILING_MG_DL)
        x[D1:IP + 1] = np.maximum(x[D1:IP + 1], 0.0)
        x[THETA] = min(max(x[THETA], -3.0), 3.0)
        self._core.x = x

    def inflate(self, indices: list[int], variances: list[float]) -> None:
        """Add variance to chosen states (after a long gap or repeated rejections)."""
        P = self.P
        for i, v in zip(indices, variances):
            P[i, i] += v
        self.set_state(self.x, P)


__all__ = [
    "FilterKind", "Innovation", "MVPFilter", "Q_PER_MIN_DEFAULT", "R_DEFAULT_MG_DL2", "H_MEASUREMENT",
    "initial_covariance", "DIST", "G",
]
