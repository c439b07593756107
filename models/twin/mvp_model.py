"""The identifiable virtual patient (MVP) model of Kanderian et al. 2009 (JDST 3:1047), as the twin runs it.

State x (index constants below), all per person, time in minutes:

    D1, D2  g         two-compartment carb absorption (announced carbs enter D1)
    Isc     mU/dL     subcutaneous insulin
    Ip      mU/dL     plasma insulin
    Ieff    1/min     insulin effect (relative to Ip_ref, see below)
    G       mg/dL     plasma glucose
    Gsc     mg/dL     interstitial (sensor-site) glucose
    theta   -         ln(SI / SI_person): insulin-sensitivity log-ratio, a random walk
    dist    mg/dL/min slowly varying glucose disturbance (unannounced carbs, EGP drift), mean-reverting (OU)
    noise   mg/dL     AR(1) sensor error (CGM error is coloured, Breton & Kovatchev 2008)

    dD1/dt   = d - D1/tm
    dD2/dt   = (D1 - D2)/tm
    dIsc/dt  = u/(t1*CI) - Isc/t1                     u: insulin delivery, mU/min
    dIp/dt   = (Isc - Ip)/t2
    dIeff/dt = -p2*Ieff + p2*SI*exp(theta)*(Ip - Ip_ref)
    dG/dt    = -(GEZI + Ieff)*G + EGP0 + 1000*D2/(VG*tm) + dist
    dGsc/dt  = (G - Gsc)/tsc
    dtheta/dt = 0 (or -theta/tau_theta if theta_tau_min > 0);  d(dist)/dt = -dist/tau_dist;
    d(noise)/dt = -noise/tau_noise   (+ process noise)

    CGM reading = Gsc + noise + white noise.

Population values (Kanderian 2009): t1 = 49, t2 = 47 min, CI = 20.1 dL/min, p2 = 0.0106/min,
SI = 0.0081 dL/mU/min, GEZI = 0.0022/min, EGP0 = 1.33 mg/dL/min, VG = 253 dL, tm = 47 min; tsc 5-10 min.
CI scales with body weight (reference 75 kg, an assumption: the paper reports absolute adult values).

Insulin action reference Ip_ref (``insulin_action`` in ``from_therapy_settings``):
  * "basal" (the twin's default): Ip_ref = the plasma insulin of the scheduled basal, so Ieff is the effect
    of insulin *above or below basal*, as the remote insulin X = p2*(I - Ib) of Bergman's minimal model
    (Bergman et al. 1979, Am J Physiol 236:E667) and of UVA/Padova. Glucose then relaxes at rate GEZI
    (time constant ~7.5 h) and 1 U lowers glucose by about the ISF at its nadir (~5 h), as clinicians and the
    UVA/Padova subjects' correction factors expect. Basal mismatch shows up in the disturbance state, not
    in theta.
  * "zero": Kanderian's equations as published (Ip_ref = 0). The whole basal insulin effect multiplies G, so
    glucose relaxes to its equilibrium at rate GEZI + SI*Ip_b (~1/100 min) and 1 U only lowers glucose by
    ~40 % of the ISF at its nadir (measured against the UVA/Padova cohort: see the helper report); kept for
    comparison.

Person-specific calibration from therapy settings (``from_therapy_settings``):
  * SI from the ISF at the target glucose: "basal": the linearised nadir drop after 1 U (``model_isf``)
    equals the ISF (so a correction of 1 U from target + ISF lands on target); "zero": the integrated
    effect target*SI*1000/CI equals the ISF;
  * EGP0 holds glucose at the target under the basal rate: EGP0 = (GEZI + SI*(Ip_b - Ip_ref)) * target;
  * VG balances carbs and insulin: CR grams (1000*CR/VG) and 1 U (target*SI*1000/CI) have the same integrated
    glucose effect, so VG = CR*CI/(target*SI).
All functions are pure numpy and vectorised over leading batch axes (sigma points, samples).
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

D1, D2, ISC, IP, IEFF, G, GSC, THETA, DIST, NOISE = range(10)
STATE_NAMES = ("D1", "D2", "Isc", "Ip", "Ieff", "G", "Gsc", "theta", "dist", "noise")
N_STATES = len(STATE_NAMES)
REFERENCE_WEIGHT_KG = 75.0
GLUCOSE_FLOOR_MG_DL = 10.0
GLUCOSE_CEILING_MG_DL = 1000.0


class ModelParameterError(ValueError):
    """A model parameter or therapy setting is not finite or outside a physiological range."""


@dataclass(frozen=True)
class MVPParameters:
    """MVP parameters for one person (units in names); defaults are Kanderian's population values."""

    t1_min: float = 49.0
    t2_min: float = 47.0
    ci_dl_per_min: float = 20.1
    p2_per_min: float = 0.0106
    si_dl_per_mu_per_min: float = 0.0081
    gezi_per_min: float = 0.0022
    egp0_mg_dl_per_min: float = 1.33
    vg_dl: float = 253.0
    tm_min: float = 47.0
    tsc_min: float = 8.0
    dist_tau_min: float = 180.0
    noise_tau_min: float = 40.0
    ip_ref_mu_dl: float = 0.0
    theta_tau_min: float = 0.0  # 0: theta is a pure random walk; > 0: it reverts to 0 (the settings)

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not (isinstance(value, int | float) and math.isfinite(value)):
                raise ModelParameterError(f"{name}={value!r} must be a finite number")
            if value < 0 or (value == 0 and name not in ("egp0_mg_dl_per_min", "ip_ref_mu_dl", "theta_tau_min")):
                raise ModelParameterError(f"{name}={value!r} must be positive")

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MVPParameters:
        return cls(**{k: float(v) for k, v in data.items()})


def population_parameters(body_weight_kg: float = REFERENCE_WEIGHT_KG) -> MVPParameters:
    """Kanderian's population values with CI and VG scaled linearly by body weight."""
    if not (math.isfinite(body_weight_kg) and 5.0 <= body_weight_kg <= 300.0):
        raise ModelParameterError(f"body weight {body_weight_kg!r} kg outside 5-300 kg")
    scale = body_weight_kg / REFERENCE_WEIGHT_KG
    base = MVPParameters()
    return replace(base, ci_dl_per_min=base.ci_dl_per_min * scale, vg_dl=base.vg_dl * scale)


def basal_mu_per_min(basal_u_per_h: float) -> float:
    """U/h -> mU/min."""
    return basal_u_per_h * 1000.0 / 60.0


@functools.lru_cache(maxsize=256)
def _linear_system(p: MVPParameters) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(A^T, c) of the model's linear part, dx/dt = x @ A^T + c, without the insulin and carb inputs and
    without the two nonlinear terms (p2*SI*exp(theta)*(Ip - Ip_ref) in dIeff/dt, -Ieff*G in dG/dt)."""
    A = np.zeros((N_STATES, N_STATES))
    c = np.zeros(N_STATES)
    A[D1, D1] = -1.0 / p.tm_min
    A[D2, D1], A[D2, D2] = 1.0 / p.tm_min, -1.0 / p.tm_min
    A[ISC, ISC] = -1.0 / p.t1_min
    A[IP, ISC], A[IP, IP] = 1.0 / p.t2_min, -1.0 / p.t2_min
    A[IEFF, IEFF] = -p.p2_per_min
    A[G, G], A[G, D2], A[G, DIST] = -p.gezi_per_min, 1000.0 / (p.vg_dl * p.tm_min), 1.0
    c[G] = p.egp0_mg_dl_per_min
    A[GSC, G], A[GSC, GSC] = 1.0 / p.tsc_min, -1.0 / p.tsc_min
    if p.theta_tau_min > 0:
        A[THETA, THETA] = -1.0 / p.theta_tau_min
    A[DIST, DIST] = -1.0 / p.dist_tau_min
    A[NOISE, NOISE] = -1.0 / p.noise_tau_min
    return _read_only(A.T.copy(), c)  # type: ignore[return-value]


def _read_only(*arrays: NDArray[np.float64]) -> tuple[NDArray[np.float64], ...]:
    """Cached arrays are shared by every caller: make an accidental in-place write fail loudly."""
    for array in arrays:
        array.flags.writeable = False
    return arrays


def derivatives(
    x: NDArray[np.float64], p: MVPParameters, insulin_mu_per_min: float | NDArray[np.float64] = 0.0,
    carbs_g_per_min: float | NDArray[np.float64] = 0.0,
) -> NDArray[np.float64]:
    """dx/dt for states ``x`` of shape (..., 10).

    The linear part is one small matrix product and the nonlinear terms are added column by column: on the
    twin's sigma points and what-if samples (tens of rows) numpy's per-call overhead, not arithmetic, is the
    cost, so fewer calls is faster (``tests/models/test_bench_twin.py`` measures it against
    ``derivatives_reference``, the equations written out).
    """
    At, c = _linear_system(p)
    dx = x @ At
    dx += c
    _add_inputs_and_nonlinear_terms(dx, x, p, insulin_mu_per_min, carbs_g_per_min, 1.0)
    return dx


def _add_inputs_and_nonlinear_terms(
    out: NDArray[np.float64], x: NDArray[np.float64], p: MVPParameters,
    insulin_mu_per_min: float | NDArray[np.float64], carbs_g_per_min: float | NDArray[np.float64], h: float,
) -> None:
    """out += h * (inputs + nonlinear terms at ``x``), in place (``out`` must not be ``x``)."""
    if not (isinstance(carbs_g_per_min, float | int) and carbs_g_per_min == 0):
        out[..., D1] += np.multiply(carbs_g_per_min, h)
    if not (isinstance(insulin_mu_per_min, float | int) and insulin_mu_per_min == 0):
        out[..., ISC] += np.multiply(insulin_mu_per_min, h / (p.t1_min * p.ci_dl_per_min))
    out[..., IEFF] += (h * p.p2_per_min * p.si_dl_per_mu_per_min) * np.exp(x[..., THETA]) * (x[..., IP] - p.ip_ref_mu_dl)
    out[..., G] -= h * x[..., IEFF] * x[..., G]


def _add_nonlinear_terms(out: NDArray[np.float64], x: NDArray[np.float64], p: MVPParameters, h: float) -> None:
    """out += h * (the two nonlinear terms at ``x``), in place, in as few numpy calls as the arithmetic allows."""
    action = np.exp(x[..., THETA])
    action *= h * p.p2_per_min * p.si_dl_per_mu_per_min
    action *= x[..., IP] - p.ip_ref_mu_dl if p.ip_ref_mu_dl else x[..., IP]
    out[..., IEFF] += action
    uptake = x[..., IEFF] * h
    uptake *= x[..., G]
    out[..., G] -= uptake


@functools.lru_cache(maxsize=1024)
def _euler_system_with_inputs(
    p: MVPParameters, h: float, insulin_mu_per_min: float, carbs_g_per_min: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """:func:`_euler_system` with constant insulin and carb inputs added to the constant term."""
    Mt, hc = _euler_system(p, h)
    with_inputs = hc.copy()
    with_inputs[D1] += carbs_g_per_min * h
    with_inputs[ISC] += insulin_mu_per_min * (h / (p.t1_min * p.ci_dl_per_min))
    return _read_only(Mt, with_inputs)  # type: ignore[return-value]


@functools.lru_cache(maxsize=256)
def _euler_system(p: MVPParameters, h: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(I + h*A)^T and h*c: one Euler substep of the linear part as one matrix product."""
    At, c = _linear_system(p)
    return _read_only(np.eye(N_STATES) + h * At, h * c)  # type: ignore[return-value]


def derivatives_reference(
    x: NDArray[np.float64], p: MVPParameters, insulin_mu_per_min: float | NDArray[np.float64] = 0.0,
    carbs_g_per_min: float | NDArray[np.float64] = 0.0,
) -> NDArray[np.float64]:
    """The module docstring's equations written out one by one: the oracle the tests hold ``derivatives`` to,
    and the benchmark's baseline. Not used at run time."""
    d1, d2, isc, ip, ieff, g, gsc, theta, dist, noise = np.moveaxis(x, -1, 0)
    tm, t1, t2, ci = p.tm_min, p.t1_min, p.t2_min, p.ci_dl_per_min
    dx = np.empty_like(x)
    dx[..., D1] = carbs_g_per_min - d1 / tm
    dx[..., D2] = (d1 - d2) / tm
    dx[..., ISC] = insulin_mu_per_min / (t1 * ci) - isc / t1
    dx[..., IP] = (isc - ip) / t2
    dx[..., IEFF] = p.p2_per_min * (p.si_dl_per_mu_per_min * np.exp(theta) * (ip - p.ip_ref_mu_dl) - ieff)
    dx[..., G] = -(p.gezi_per_min + ieff) * g + p.egp0_mg_dl_per_min + 1000.0 * d2 / (p.vg_dl * tm) + dist
    dx[..., GSC] = (g - gsc) / p.tsc_min
    dx[..., THETA] = -theta / p.theta_tau_min if p.theta_tau_min > 0 else 0.0
    dx[..., DIST] = -dist / p.dist_tau_min
    dx[..., NOISE] = -noise / p.noise_tau_min
    return dx


def jacobian(x: NDArray[np.float64], p: MVPParameters) -> NDArray[np.float64]:
    """d(derivatives)/dx at a single state ``x`` (10,), analytic."""
    ip, ieff, g, theta = float(x[IP]), float(x[IEFF]), float(x[G]), float(x[THETA])
    si_eff = p.si_dl_per_mu_per_min * math.exp(theta)
    J = np.zeros((N_STATES, N_STATES))
    J[D1, D1] = -1.0 / p.tm_min
    J[D2, D1] = 1.0 / p.tm_min
    J[D2, D2] = -1.0 / p.tm_min
    J[ISC, ISC] = -1.0 / p.t1_min
    J[IP, ISC] = 1.0 / p.t2_min
    J[IP, IP] = -1.0 / p.t2_min
    J[IEFF, IP] = p.p2_per_min * si_eff
    J[IEFF, IEFF] = -p.p2_per_min
    J[IEFF, THETA] = p.p2_per_min * si_eff * (ip - p.ip_ref_mu_dl)
    J[G, D2] = 1000.0 / (p.vg_dl * p.tm_min)
    J[G, IEFF] = -g
    J[G, G] = -(p.gezi_per_min + ieff)
    J[G, DIST] = 1.0
    J[GSC, G] = 1.0 / p.tsc_min
    J[GSC, GSC] = -1.0 / p.tsc_min
    J[DIST, DIST] = -1.0 / p.dist_tau_min
    if p.theta_tau_min > 0:
        J[THETA, THETA] = -1.0 / p.theta_tau_min
    J[NOISE, NOISE] = -1.0 / p.noise_tau_min
    return J


_LOWER_BOUNDS = np.array([0.0, 0.0, 0.0, 0.0, -np.inf, GLUCOSE_FLOOR_MG_DL, GLUCOSE_FLOOR_MG_DL, -3.0, -np.inf, -np.inf])
_UPPER_BOUNDS = np.array([np.inf] * 5 + [GLUCOSE_CEILING_MG_DL, GLUCOSE_CEILING_MG_DL, 3.0, np.inf, np.inf])


def _clip_physiological(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """In place: amounts (D1, D2, Isc, Ip) >= 0, glucose (G, Gsc) within floor..ceiling, theta within +-3."""
    return np.minimum(np.maximum(x, _LOWER_BOUNDS, out=x), _UPPER_BOUNDS, out=x)


def step(
    x: NDArray[np.float64], dt_min: float, p: MVPParameters, insulin_mu_per_min: float | NDArray[np.float64] = 0.0,
    carbs_g_per_min: float | NDArray[np.float64] = 0.0, substep_min: float = 1.0, method: str = "euler",
) -> NDArray[np.float64]:
    """Propagate ``x`` (..., 10) over ``dt_min`` with constant inputs: explicit Euler or RK4 substeps.

    Euler with 1-min substeps is stable and accurate to well under 1 mg/dL here (the fastest time constant,
    tsc, is 5-10 min); RK4 costs four derivative evaluations per substep for little gain (see the benchmark).
    """
    x = np.asarray(x, dtype=float)  # never written to: every substep makes a new array
    if dt_min <= 0:
        return x.copy()
    n = max(1, math.ceil(dt_min / substep_min - 1e-9))
    h = dt_min / n
    if method == "euler":  # x + h*f(x), with the linear part and its Euler update fused in one matrix product
        if isinstance(insulin_mu_per_min, float | int) and isinstance(carbs_g_per_min, float | int):
            # Constant scalar inputs join the constant term: a substep is then a dozen numpy calls.
            Mt, hc = _euler_system_with_inputs(p, h, float(insulin_mu_per_min), float(carbs_g_per_min))
            for _ in range(n):
                nxt = x @ Mt
                nxt += hc
                _add_nonlinear_terms(nxt, x, p, h)
                x = _clip_physiological(nxt)
            return x
        Mt, hc = _euler_system(p, h)
        for _ in range(n):
            nxt = x @ Mt
            nxt += hc
            _add_inputs_and_nonlinear_terms(nxt, x, p, insulin_mu_per_min, carbs_g_per_min, h)
            x = _clip_physiological(nxt)
        return x
    if method != "rk4":
        raise ValueError(f"unknown integration method {method!r} (euler or rk4)")
    for _ in range(n):
        k1 = derivatives(x, p, insulin_mu_per_min, carbs_g_per_min)
        k2 = derivatives(x + 0.5 * h * k1, p, insulin_mu_per_min, carbs_g_per_min)
        k3 = derivatives(x + 0.5 * h * k2, p, insulin_mu_per_min, carbs_g_per_min)
        k4 = derivatives(x + h * k3, p, insulin_mu_per_min, carbs_g_per_min)
        x = x + (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)
        _clip_physiological(x)
    return x


def step_with_jacobian(
    x: NDArray[np.float64], dt_min: float, p: MVPParameters, insulin_mu_per_min: float = 0.0,
    carbs_g_per_min: float = 0.0, substep_min: float = 1.0,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Euler-substep propagation of one state and the Jacobian F of the whole step (product of I + h*J)."""
    x = np.array(x, dtype=float, copy=True)
    F = np.eye(N_STATES)
    if dt_min <= 0:
        return x, F
    n = max(1, math.ceil(dt_min / substep_min - 1e-9))
    h = dt_min / n
    eye = np.eye(N_STATES)
    for _ in range(n):
        F = (eye + h * jacobian(x, p)) @ F
        x = x + h * derivatives(x, p, insulin_mu_per_min, carbs_g_per_min)
        _clip_physiological(x)
    return x, F


def steady_state(p: MVPParameters, basal_u_per_h: float, glucose_mg_dl: float) -> NDArray[np.float64]:
    """The state under a constant basal rate, no carbs, glucose at ``glucose_mg_dl`` and no disturbance."""
    ip = basal_mu_per_min(basal_u_per_h) / p.ci_dl_per_min
    x = np.zeros(N_STATES)
    x[ISC] = x[IP] = ip
    x[IEFF] = p.si_dl_per_mu_per_min * (ip - p.ip_ref_mu_dl)
    x[G] = x[GSC] = glucose_mg_dl
    return x


@functools.lru_cache(maxsize=256)
def _nadir_drop_per_si_glucose(p: MVPParameters, restoring_per_min: float, horizon_min: int = 720) -> float:
    """Largest glucose drop after 1 U for SI = 1 and G = 1, linearised around steady state (Euler, 1 min).

    dIsc = -Isc/t1 (Isc(0) = 1000/(t1*CI)), dIp = (Isc - Ip)/t2, dIeff = p2*(SI*Ip - Ieff),
    dG = -k*G - Ieff*G_b; the drop is linear in SI*G_b, so one run per parameter set is enough.
    """
    isc, ip, ieff, dg, lowest = 1000.0 / (p.t1_min * p.ci_dl_per_min), 0.0, 0.0, 0.0, 0.0
    for _ in range(horizon_min):
        isc, ip, ieff, dg = (isc - isc / p.t1_min, ip + (isc - ip) / p.t2_min, ieff + p.p2_per_min * (ip - ieff),
                             dg - restoring_per_min * dg - ieff)
        lowest = min(lowest, dg)
    return -lowest


def model_isf_mg_dl_per_u(
    p: MVPParameters, glucose_mg_dl: float, theta: float | NDArray[np.float64] = 0.0
) -> NDArray[np.float64]:
    """Insulin sensitivity factor (mg/dL per U) implied by SI * exp(theta) at ``glucose_mg_dl``.

    Basal-referenced action (Ip_ref > 0): the linearised nadir drop after 1 U at ``glucose_mg_dl`` (G * SI *
    the unit response). Because the effect is proportional to G, this is also (to a few %) the extra drop of
    1 U given at target + ISF, i.e. a correction that lands on target: what a correction factor means.
    Zero-referenced (Kanderian as published): the integrated effect G * SI * 1000/CI (the plasma-insulin area
    of 1 U is 1000/CI), since the nadir there saturates with the basal insulin level.
    """
    theta_arr = np.asarray(theta, dtype=float)
    si = p.si_dl_per_mu_per_min * np.exp(theta_arr)
    if p.ip_ref_mu_dl > 0:
        return glucose_mg_dl * si * _nadir_drop_per_si_glucose(p, p.gezi_per_min)
    return glucose_mg_dl * si * 1000.0 / p.ci_dl_per_min


def carb_sensitivity_mg_dl_per_g(p: MVPParameters) -> float:
    """Total (integrated) glucose input per gram of carbs in the model: 1000 mg/g spread over VG dL."""
    return 1000.0 / p.vg_dl


def from_therapy_settings(
    basal_u_per_h: float, isf_mg_dl_per_u: float, carb_ratio_g_per_u: float,
    body_weight_kg: float = REFERENCE_WEIGHT_KG, target_mg_dl: float = 110.0, insulin_action: str = "basal",
) -> MVPParameters:
    """Person-specific MVP parameters from therapy settings (see the module docstring for the calibration)."""
    checks = {
        "basal_u_per_h": (basal_u_per_h, 0.0, 12.0),
        "isf_mg_dl_per_u": (isf_mg_dl_per_u, 5.0, 600.0),
        "carb_ratio_g_per_u": (carb_ratio_g_per_u, 1.0, 200.0),
        "target_mg_dl": (target_mg_dl, 60.0, 250.0),
    }
    for name, (value, low, high) in checks.items():
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not (number and math.isfinite(value) and low <= value <= high):
            raise ModelParameterError(f"{name}={value!r} outside {low:g}-{high:g}")
    if insulin_action not in ("basal", "zero"):
        raise ModelParameterError(f"insulin_action={insulin_action!r} must be 'basal' or 'zero'")
    p = population_parameters(body_weight_kg)
    ip_b = basal_mu_per_min(basal_u_per_h) / p.ci_dl_per_min
    if insulin_action == "basal":
        ip_ref = ip_b
        si = isf_mg_dl_per_u / (target_mg_dl * _nadir_drop_per_si_glucose(p, p.gezi_per_min))
    else:
        ip_ref = 0.0
        si = isf_mg_dl_per_u * p.ci_dl_per_min / (1000.0 * target_mg_dl)
    egp0 = (p.gezi_per_min + si * (ip_b - ip_ref)) * target_mg_dl
    vg = carb_ratio_g_per_u * p.ci_dl_per_min / (target_mg_dl * si)
    return replace(p, si_dl_per_mu_per_min=si, egp0_mg_dl_per_min=egp0, vg_dl=vg, ip_ref_mu_dl=ip_ref)
