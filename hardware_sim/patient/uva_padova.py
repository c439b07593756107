"""UVA/Padova S2008 type 1 diabetes model, all subjects of a cohort advanced together as arrays.

Equations: Dalla Man et al. 2007 (IEEE TBME 54:1740, meal model and glucose-insulin system), Dalla Man et al.
2006 (IEEE TBME 53:2472, gastric emptying), with the subcutaneous insulin and glucose compartments of Kovatchev
et al. 2009 (JDST 3:44), as implemented by simglucose 0.2.11 (``T1DPatient``), which this module reproduces
to within 1 mg/dL on identical inputs (tests/hardware_sim/test_uva_padova_agreement.py). Own vectorised code.

State x (13 per subject):
  0 Qsto1 solid stomach glucose (mg)  1 Qsto2 liquid stomach glucose (mg)  2 Qgut gut glucose (mg)
  3 Gp plasma glucose (mg/kg)  4 Gt tissue glucose (mg/kg)  5 Ip plasma insulin (pmol/kg)
  6 X insulin action on utilisation (pmol/L)  7 I' delayed insulin (pmol/L)  8 XL hepatic insulin action
  9 Il liver insulin (pmol/kg)  10 Isc1, 11 Isc2 subcutaneous insulin (pmol/kg)  12 Gs interstitial glucose
  (same scale as Gp; reported as Gs/Vg in mg/dL).

Equations, with inputs D (carbs, mg/min) and u (insulin, pmol/kg/min = U/min * 6000 / BW):
  dQsto1 = -kmax*Qsto1 + D
  dQsto2 = kmax*Qsto1 - kgut*Qsto2
  dQgut  = kgut*Qsto2 - kabs*Qgut
  kgut   = kmin + (kmax - kmin)/2 * (tanh(aa*(Qsto - b*Dbar)) - tanh(cc*(Qsto - d*Dbar)) + 2),
           aa = 5/(2*Dbar*(1 - b)), cc = 5/(2*Dbar*d), Qsto = Qsto1 + Qsto2 (kgut = kmax when Dbar = 0)
           Dbar (mg) = stomach content when the current meal started + everything eaten since (g * 1000).
  Ra     = f*kabs*Qgut/BW
  EGP    = max(kp1 - kp2*Gp - kp3*XL, 0);  E = ke1*max(Gp - ke2, 0) (renal excretion)
  dGp    = EGP + Ra - Fsnc - E - k1*Gp + k2*Gt
  dGt    = -(Vm0 + Vmx*X)*Gt/(Km0 + Gt) + k1*Gp - k2*Gt
  dIp    = -(m2 + m4)*Ip + m1*Il + ka1*Isc1 + ka2*Isc2;  I = Ip/Vi
  dX     = -p2u*X + p2u*(I - Ib);  dI' = -ki*(I' - I);  dXL = -ki*(XL - I')
  dIl    = -(m1 + m30)*Il + m2*Ip
  dIsc1  = u - (ka1 + kd)*Isc1;  dIsc2 = kd*Isc1 - ka2*Isc2
  dGs    = ksc*(Gp - Gs)
Like simglucose, the derivatives of Gp, Gt, Ip, Il, Isc1, Isc2 and Gs are set to 0 while that state is
negative (a clamp that keeps them from going further below zero); after each fixed step those states are also
projected onto >= 0 (an adaptive solver stops at ~0; a fixed step could overshoot below it).

Meal bookkeeping (as simglucose): carbs are an eating *rate* held over each minute. When eating starts (rate
> 0 after a minute with rate 0) the model records the stomach content Qsto1 + Qsto2 and resets "food
taken"; while eating, food taken accumulates; Dbar = recorded content + food taken and stays fixed after the
meal until the next one starts.

Scenario modifiers (not in S2008; the scenario engine's sensitivity drift and dawn phenomenon):
  insulin_sensitivity_scale s multiplies Vmx (insulin-dependent utilisation) and kp3 (insulin suppression of
  hepatic production); egp_scale e multiplies kp1 (basal hepatic production). With s = e = 1 the model is
  S2008 exactly. Scales other than 1 move the fasting steady state (e > 1 raises fasting glucose), which is
  the intended effect. Magnitudes (published 30, basal insulin only, after 10 h): kp1 is 1.4-3.4 x EGPb, so
  e = 1.05 raises plasma glucose by 11-19 mg/dL (median 15), e = 1.10 by 22-38 (median 31); s = 0.8 by
  4-24 mg/dL (median 13).

Integration: classical RK4 with ``substeps_per_min`` equal sub-steps per minute (inputs held constant over
each minute, as simglucose's dopri5 call per minute). Measured on the agreement fixture (30 subjects, 24 h,
3 meals): max |plasma difference| 0.019 mg/dL with 2 sub-steps (default), 0.32 with 1, 0.0016 with 4.
"""

from __future__ import annotations

import math

import numpy as np

from hardware_sim.patient.cohort import Cohort

__all__ = ["STATE_NAMES", "N_STATES", "PatientInputError", "UvaPadovaCohortModel"]

STATE_NAMES: tuple[str, ...] = (
    "Qsto1", "Qsto2", "Qgut", "Gp", "Gt", "Ip", "X", "I'", "XL", "Il", "Isc1", "Isc2", "Gs",
)
N_STATES = len(STATE_NAMES)
_CLAMPED_STATES = (3, 4, 5, 9, 10, 11, 12)  # Gp, Gt, Ip, Il, Isc1, Isc2, Gs
_CLAMP_MASK = np.isin(np.arange(13), _CLAMPED_STATES)[:, None]  # (13, 1), broadcasts over subjects
_MIN_DBAR_MG = 1e-3
_U_PER_MIN_TO_PMOL = 6000.0  # 1 U = 6000 pmol; divided by BW gives pmol/kg/min


class PatientInputError(ValueError):
    """An input to the cohort model has the wrong shape, is negative or not finite."""


class UvaPadovaCohortModel:
    """M virtual patients of a :class:`Cohort`, advanced together.

    >>> from hardware_sim.patient.cohort import load_cohort
    >>> model = UvaPadovaCohortModel(load_cohort("adults"))
    >>> basal = model.cohort.basal_u_per_h / 60.0
    >>> model.step(carbs_g_per_min=0.0, insulin_u_per_min=basal, minutes=60)
    >>> model.plasma_glucose_mg_dl.shape
    (10,)
    """

    def __init__(self, cohort: Cohort, *, substeps_per_min: int = 2, initial_state: np.ndarray | None = None):
        if int(substeps_per_min) != substeps_per_min or substeps_per_min < 1:
            raise ValueError(f"substeps_per_min must be a positive integer, got {substeps_per_min!r}")
        self.cohort = cohort
        self.substeps_per_min = int(substeps_per_min)
        p = cohort.params
        m = cohort.size
        self._m = m
        g = lambda key: np.array(p[key], dtype=np.float64)  # noqa: E731 - local shorthand
        self._bw = g("BW")
        self._vg = g("Vg")
        self._vi = g("Vi")
        self._ib = g("Ib")
        self._kabs, self._kmax, self._kmin, self._b, self._d = g("kabs"), g("kmax"), g("kmin"), g("b"), g("d")
        self._ra_coef = g("f") * self._kabs / self._bw
        self._kp1, self._kp2, self._kp3 = g("kp1"), g("kp2"), g("kp3")
        self._fsnc, self._ke1, self._ke2 = g("Fsnc"), g("ke1"), g("ke2")
        self._k1, self._k2 = g("k1"), g("k2")
        self._vm0, self._vmx, self._km0 = g("Vm0"), g("Vmx"), g("Km0")
        self._m1, self._m2, self._m4, self._m30 = g("m1"), g("m2"), g("m4"), g("m30")
        self._m2m4 = self._m2 + self._m4
        self._m1m30 = self._m1 + self._m30
        self._ka1, self._ka2, self._kd = g("ka1"), g("ka2"), g("kd")
        self._ka1kd = self._ka1 + self._kd
        self._p2u, self._ki, self._ksc = g("p2u"), g("ki"), g("ksc")
        self._half_dk = (self._kmax - self._kmin) / 2.0
        self._ins_coef = _U_PER_MIN_TO_PMOL / self._bw
        if initial_state is None:
            self._x0 = np.ascontiguousarray(cohort.initial_state.T)  # internal layout (13, M)
        else:
            x0 = np.asarray(initial_state, dtype=np.float64)
            if x0.shape != (m, N_STATES) or not np.all(np.isfinite(x0)):
                raise PatientInputError(f"initial_state must be finite with shape ({m}, {N_STATES})")
            self._x0 = np.ascontiguousarray(x0.T)
        self.reset()

    # ---------------------------------------------------------------------------------------------- state
    def reset(self) -> None:
        """Back to the initial (steady) state, no meal in progress, time 0."""
        self._x = self._x0.copy()
        self._last_qsto_mg = self._x[0] + self._x[1]
        self._food_taken_g = np.zeros(self._m)
        self._last_carbs_g_per_min = np.zeros(self._m)
        self._eating = np.zeros(self._m, dtype=bool)
        self._time_min = 0.0

    @property
    def n_subjects(self) -> int:
        return self._m

    @property
    def time_min(self) -> float:
        """Minutes simulated since construction or the last reset."""
        return self._time_min

    @property
    def state(self) -> np.ndarray:
        """Copy of the state, shape (M, 13), columns in :data:`STATE_NAMES` order."""
        return self._x.T.copy()

    @property
    def plasma_glucose_mg_dl(self) -> np.ndarray:
        """Gp / Vg, shape (M,)."""
        return self._x[3] / self._vg

    @property
    def interstitial_glucose_mg_dl(self) -> np.ndarray:
        """Gs / Vg (what a CGM senses), shape (M,)."""
        return self._x[12] / self._vg

    @property
    def meal_reference_mg(self) -> np.ndarray:
        """Dbar of the current or last meal (mg), shape (M,)."""
        return self._last_qsto_mg + self._food_taken_g * 1000.0

    # ----------------------------------------------------------------------------------------- stepping
    def _per_subject(self, value, label: str, *, positive: bool = False) -> np.ndarray:
        arr = np.asarray(value, dtype=np.float64)
        if arr.shape != (self._m,):
            try:
                arr = np.broadcast_to(arr, (self._m,))
            except ValueError:
                raise PatientInputError(f"{label} has shape {arr.shape}; expected a scalar or ({self._m},)") from None
        low = arr.min()
        if not (low >= 0 and np.isfinite(arr.max())):  # also catches NaN
            raise PatientInputError(f"{label} must be finite and >= 0")
        if positive and low <= 0:
            raise PatientInputError(f"{label} must be > 0")
        return arr

    def step(
        self,
        carbs_g_per_min,
        insulin_u_per_min,
        minutes: float = 1.0,
        *,
        insulin_sensitivity_scale=None,
        egp_scale=None,
    ) -> None:
        """Advance every subject by ``minutes`` with inputs held constant.

        carbs_g_per_min: eating rate (g/min), scalar or (M,); simglucose eats at most 5 g/min.
        insulin_u_per_min: total insulin delivery rate (basal + bolus, U/min), scalar or (M,).
        minutes: > 0; split into whole minutes (each a separate "action" for the meal bookkeeping, exactly as
        simglucose steps one minute at a time) and a final fractional part.
        insulin_sensitivity_scale, egp_scale: optional (M,) multipliers, see the module docstring.
        """
        carbs = self._per_subject(carbs_g_per_min, "carbs_g_per_min")
        insulin = self._per_subject(insulin_u_per_min, "insulin_u_per_min")
        if insulin_sensitivity_scale is None:
            vmx, kp3 = self._vmx, self._kp3
        else:
            s_scale = self._per_subject(insulin_sensitivity_scale, "insulin_sensitivity_scale", positive=True)
            vmx, kp3 = self._vmx * s_scale, self._kp3 * s_scale
        if egp_scale is None:
            kp1 = self._kp1
        else:
            kp1 = self._kp1 * self._per_subject(egp_scale, "egp_scale", positive=True)
        minutes = float(minutes)
        if not math.isfinite(minutes) or minutes <= 0:
            raise PatientInputError(f"minutes must be a finite number > 0, got {minutes!r}")

        d_mg = carbs * 1000.0
        u_pmol = insulin * self._ins_coef
        whole = int(math.floor(minutes + 1e-9))
        chunks = [1.0] * whole
        rest = minutes - whole
        if rest > 1e-9:
            chunks.append(rest)
        for dt in chunks:
            self._account_meal(carbs, dt)
            dbar = self._last_qsto_mg + self._food_taken_g * 1000.0
            # Dbar = 0 gives kgut = kmax (aa = cc = 0); meals below 1 ug are treated as none (avoids overflow).
            has_meal = dbar > _MIN_DBAR_MG
            safe = np.where(has_meal, dbar, 1.0)
            aa = np.where(has_meal, 5.0 / (2.0 * safe * (1.0 - self._b)), 0.0)
            cc = np.where(has_meal, 5.0 / (2.0 * safe * self._d), 0.0)
            gut = (aa, cc, self._b * dbar, self._d * dbar)
            n_sub = max(1, math.ceil(self.substeps_per_min * dt - 1e-9))
            h = dt / n_sub
            for _ in range(n_sub):
                self._rk4(h, d_mg, u_pmol, gut, vmx, kp3, kp1)
            self._time_min += dt

    def _account_meal(self, carbs: np.ndarray, dt: float) -> None:
        starts = (carbs > 0) & (self._last_carbs_g_per_min <= 0)
        if np.any(starts):
            self._last_qsto_mg = np.where(starts, self._x[0] + self._x[1], self._last_qsto_mg)
            self._food_taken_g = np.where(starts, 0.0, self._food_taken_g)
            self._eating = self._eating | starts
        self._food_taken_g = self._food_taken_g + np.where(self._eating, carbs * dt, 0.0)
        ends = (carbs <= 0) & (self._last_carbs_g_per_min > 0)
        self._eating = self._eating & ~ends
        self._last_carbs_g_per_min = carbs.copy()

    def _rk4(self, h, d_mg, u_pmol, gut, vmx, kp3, kp1) -> None:
        x = self._x
        k1 = self._rhs(x, d_mg, u_pmol, gut, vmx, kp3, kp1)
        k2 = self._rhs(x + (0.5 * h) * k1, d_mg, u_pmol, gut, vmx, kp3, kp1)
        k3 = self._rhs(x + (0.5 * h) * k2, d_mg, u_pmol, gut, vmx, kp3, kp1)
        k4 = self._rhs(x + h * k3, d_mg, u_pmol, gut, vmx, kp3, kp1)
        x_new = x + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        negative = (x_new < 0) & _CLAMP_MASK
        if negative.any():
            # A fixed step can overshoot a clamped state below 0 where simglucose's adaptive dopri5 stops at
            # ~0 (only in extreme hypoglycaemia, glucose near 0 mg/dL): project back onto 0.
            x_new[negative] = 0.0
        self._x = x_new

    def _rhs(self, x, d_mg, u_pmol, gut, vmx, kp3, kp1) -> np.ndarray:
        qsto1, qsto2, qgut, gp, gt, ip, xins, i1, xl, il, isc1, isc2, gs = x
        aa, cc, b_dbar, d_dbar = gut
        dx = np.empty_like(x)
        qsto = qsto1 + qsto2
        kgut = self._kmin + self._half_dk * (np.tanh(aa * (qsto - b_dbar)) - np.tanh(cc * (qsto - d_dbar)) + 2.0)
        dx[0] = d_mg - self._kmax * qsto1
        dx[1] = self._kmax * qsto1 - kgut * qsto2
        dx[2] = kgut * qsto2 - self._kabs * qgut
        egp = np.maximum(kp1 - self._kp2 * gp - kp3 * xl, 0.0)
        renal = self._ke1 * np.maximum(gp - self._ke2, 0.0)
        dx[3] = egp + self._ra_coef * qgut - self._fsnc - renal - self._k1 * gp + self._k2 * gt
        dx[4] = -(self._vm0 + vmx * xins) * gt / (self._km0 + gt) + self._k1 * gp - self._k2 * gt
        dx[5] = -self._m2m4 * ip + self._m1 * il + self._ka1 * isc1 + self._ka2 * isc2
        it = ip / self._vi
        dx[6] = self._p2u * (it - self._ib - xins)
        dx[7] = self._ki * (it - i1)
        dx[8] = self._ki * (i1 - xl)
        dx[9] = self._m2 * ip - self._m1m30 * il
        dx[10] = u_pmol - self._ka1kd * isc1
        dx[11] = self._kd * isc1 - self._ka2 * isc2
        dx[12] = self._ksc * (gp - gs)
        negative = (x < 0) & _CLAMP_MASK
        if negative.any():
            dx[negative] = 0.0
        return dx
