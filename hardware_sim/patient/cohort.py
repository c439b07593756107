"""Virtual-patient cohorts for the UVA/Padova S2008 model.

A :class:`Cohort` holds M subjects side by side: every model parameter is an array of shape (M,), so the
simulator (:mod:`hardware_sim.patient.uva_padova`) advances all of them with one set of array operations.

Sources (see ``data/README.md``): the 30 published subjects (10 adults, 10 adolescents, 10 children) of
simglucose 0.2.11 (MIT), which implements Dalla Man et al. 2007 (IEEE TBME 54:1740) and Kovatchev et al. 2009
(JDST 3:44); therapy settings (CR, CF, TDI, age) from the same package's ``Quest.csv``.

Larger virtual populations: :func:`sample_population` (method documented there).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from importlib import resources
from typing import Iterable, Sequence

import numpy as np

__all__ = [
    "AGE_GROUPS",
    "Cohort",
    "CohortSelectionError",
    "concatenate",
    "derive_steady_state",
    "load_cohort",
    "model_carb_ratio_g_per_u",
    "model_correction_factor_mg_dl_per_u",
    "sample_population",
]

AGE_GROUPS: tuple[str, ...] = ("adult", "adolescent", "child")
_GROUP_SELECTORS = {"adults": "adult", "adolescents": "adolescent", "children": "child"}
_PACKAGE = "hardware_sim.patient"
#: Columns of vpatient_params.csv that are labels or bookkeeping, not model parameters.
_NON_PARAMETER_COLUMNS = ("Name", "i")


class CohortSelectionError(ValueError):
    """A cohort selection string names an unknown group or subject, or is empty."""


def _as_f64(values: Iterable[float]) -> np.ndarray:
    return np.asarray(list(values), dtype=np.float64)


@dataclass(frozen=True, eq=False)
class Cohort:
    """M virtual subjects; per-subject quantities are float arrays of shape (M,).

    ``params`` maps every UVA/Padova parameter name of ``vpatient_params.csv`` (initial states renamed
    ``x0_1`` ... ``x0_13``) to an (M,) array in the units of Dalla Man 2007 (glucose masses mg/kg, insulin
    pmol/kg or pmol/L, rates 1/min, BW kg).
    ``basal_u_per_h`` is the steady-state basal rate u2ss * BW / 6000 * 60 (u2ss in pmol/kg/min).
    Therapy settings come from simglucose's Quest table: carb ratio (g/U), correction factor (mg/dL per U),
    total daily insulin (U), age (years).
    """

    names: tuple[str, ...]
    age_groups: tuple[str, ...]
    params: dict[str, np.ndarray]
    body_weight_kg: np.ndarray
    basal_u_per_h: np.ndarray
    carb_ratio_g_per_u: np.ndarray
    correction_factor_mg_dl_per_u: np.ndarray
    total_daily_insulin_u: np.ndarray
    age_years: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        m = len(self.names)
        if len(self.age_groups) != m:
            raise ValueError(f"{len(self.age_groups)} age groups for {m} names")
        bad_groups = sorted(set(self.age_groups) - set(AGE_GROUPS))
        if bad_groups:
            raise ValueError(f"unknown age groups {bad_groups}; expected one of {AGE_GROUPS}")
        if self.age_years.shape == (0,) and m != 0:
            object.__setattr__(self, "age_years", np.full(m, np.nan))
        for label in ("body_weight_kg", "basal_u_per_h", "carb_ratio_g_per_u",
                      "correction_factor_mg_dl_per_u", "total_daily_insulin_u", "age_years"):
            arr = np.asarray(getattr(self, label), dtype=np.float64)
            if arr.shape != (m,):
                raise ValueError(f"{label} has shape {arr.shape}, expected ({m},)")
            arr.setflags(write=False)
            object.__setattr__(self, label, arr)
        frozen: dict[str, np.ndarray] = {}
        for key, values in self.params.items():
            arr = np.array(values, dtype=np.float64)
            if arr.shape != (m,):
                raise ValueError(f"parameter {key!r} has shape {arr.shape}, expected ({m},)")
            arr.setflags(write=False)
            frozen[key] = arr
        object.__setattr__(self, "params", frozen)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def size(self) -> int:
        """Number of subjects M."""
        return len(self.names)

    @property
    def basal_glucose_mg_dl(self) -> np.ndarray:
        """Gb, the fasting steady-state plasma glucose of each subject (mg/dL)."""
        return self.params["Gb"]

    @property
    def initial_state(self) -> np.ndarray:
        """The published steady-state initial state, shape (M, 13), order of the model's state vector."""
        return np.stack([self.params[f"x0_{i}"] for i in range(1, 14)], axis=1)

    def take(self, indices: Sequence[int] | np.ndarray) -> "Cohort":
        """A cohort made of the given subject indices (repeats allowed), in that order."""
        idx = np.asarray(indices, dtype=np.intp).reshape(-1)
        return Cohort(
            names=tuple(self.names[i] for i in idx),
            age_groups=tuple(self.age_groups[i] for i in idx),
            params={k: v[idx] for k, v in self.params.items()},
            body_weight_kg=self.body_weight_kg[idx],
            basal_u_per_h=self.basal_u_per_h[idx],
            carb_ratio_g_per_u=self.carb_ratio_g_per_u[idx],
            correction_factor_mg_dl_per_u=self.correction_factor_mg_dl_per_u[idx],
            total_daily_insulin_u=self.total_daily_insulin_u[idx],
            age_years=self.age_years[idx],
        )

    def repeat(self, k: int) -> "Cohort":
        """The whole cohort k times in a row (subject order s0..sM-1, s0..sM-1, ...): size k*M.

        Used to replicate subjects over scenarios x seeds; row r belongs to replicate r // M, subject r % M.
        """
        if int(k) != k or k < 1:
            raise ValueError(f"repeat count must be a positive integer, got {k!r}")
        return self.take(np.tile(np.arange(self.size), int(k)))

    def index_of(self, name: str) -> int:
        """Index of the first subject called ``name``."""
        try:
            return self.names.index(name)
        except ValueError:
            raise CohortSelectionError(f"no subject named {name!r} in this cohort") from None


def concatenate(cohorts: Sequence[Cohort]) -> Cohort:
    """Subjects of all cohorts, in order. Parameters must have the same names in every cohort."""
    if not cohorts:
        raise ValueError("concatenate needs at least one cohort")
    keys = set(cohorts[0].params)
    for c in cohorts[1:]:
        if set(c.params) != keys:
            raise ValueError("cohorts have different parameter sets")
    return Cohort(
        names=tuple(n for c in cohorts for n in c.names),
        age_groups=tuple(g for c in cohorts for g in c.age_groups),
        params={k: np.concatenate([c.params[k] for c in cohorts]) for k in cohorts[0].params},
        body_weight_kg=np.concatenate([c.body_weight_kg for c in cohorts]),
        basal_u_per_h=np.concatenate([c.basal_u_per_h for c in cohorts]),
        carb_ratio_g_per_u=np.concatenate([c.carb_ratio_g_per_u for c in cohorts]),
        correction_factor_mg_dl_per_u=np.concatenate([c.correction_factor_mg_dl_per_u for c in cohorts]),
        total_daily_insulin_u=np.concatenate([c.total_daily_insulin_u for c in cohorts]),
        age_years=np.concatenate([c.age_years for c in cohorts]),
    )


def _read_csv(filename: str) -> list[dict[str, str]]:
    text = resources.files(_PACKAGE).joinpath("data", filename).read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


def _normalise_column(name: str) -> str:
    # simglucose spells the initial-state columns "x0_ 1" ... "x0_13".
    return name.replace(" ", "")


def _group_of(name: str) -> str:
    group = name.split("#", 1)[0]
    if group not in AGE_GROUPS:
        raise ValueError(f"subject {name!r} has no known age group")
    return group


def _load_published() -> Cohort:
    rows = _read_csv("vpatient_params.csv")
    quest = {row["Name"]: row for row in _read_csv("quest.csv")}
    names = tuple(row["Name"] for row in rows)
    missing = [n for n in names if n not in quest]
    if missing:
        raise ValueError(f"quest.csv lacks therapy settings for {missing}")
    columns = [c for c in rows[0] if c not in _NON_PARAMETER_COLUMNS]
    params = {_normalise_column(c): _as_f64(float(row[c]) for row in rows) for c in columns}
    bw = params["BW"]
    return Cohort(
        names=names,
        age_groups=tuple(_group_of(n) for n in names),
        params=params,
        body_weight_kg=bw,
        basal_u_per_h=params["u2ss"] * bw / 6000.0 * 60.0,
        carb_ratio_g_per_u=_as_f64(float(quest[n]["CR"]) for n in names),
        correction_factor_mg_dl_per_u=_as_f64(float(quest[n]["CF"]) for n in names),
        total_daily_insulin_u=_as_f64(float(quest[n]["TDI"]) for n in names),
        age_years=_as_f64(float(quest[n]["Age"]) for n in names),
    )


_PUBLISHED: Cohort | None = None


def load_cohort(selection: str = "all") -> Cohort:
    """The published 30-subject cohort, or part of it.

    ``selection``: "all", "adults", "adolescents", "children", or comma-separated names
    ("adult#001,child#003"); tokens may mix groups and names. Order follows the selection; the groups keep
    the file's order (adolescents, adults, children within "all").

    Raises :class:`CohortSelectionError` for an unknown token or an empty selection.
    """
    global _PUBLISHED
    if _PUBLISHED is None:
        _PUBLISHED = _load_published()
    base = _PUBLISHED
    tokens = [t.strip() for t in str(selection).split(",") if t.strip()]
    if not tokens:
        raise CohortSelectionError("empty cohort selection")
    indices: list[int] = []
    for token in tokens:
        key = token.lower()
        if key == "all":
            indices.extend(range(base.size))
        elif key in _GROUP_SELECTORS:
            group = _GROUP_SELECTORS[key]
            indices.extend(i for i, g in enumerate(base.age_groups) if g == group)
        elif token in base.names:
            indices.append(base.names.index(token))
        else:
            raise CohortSelectionError(
                f"unknown cohort selection {token!r}: use all, adults, adolescents, children or names such as "
                f"adult#001 (known: {', '.join(base.names)})"
            )
    return base.take(indices)


# --------------------------------------------------------------------------------------------------------
# Steady state and population sampling
# --------------------------------------------------------------------------------------------------------

#: Parameters sampled in log space (positive); the fractions below are sampled in logit space.
_LOG_PARAMETERS = (
    "BW", "Gb", "Ib", "EGPb", "kabs", "kmax", "kmin", "Vg", "Vi", "Vmx", "Km0", "k1", "k2", "p2u", "m1",
    "m2", "m4", "ki", "kp2", "kp3", "ke1", "ke2", "Fsnc", "kd", "ksc", "ka1", "ka2", "m5",
)
_LOGIT_PARAMETERS = ("b", "d", "f", "HEb")


def derive_steady_state(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Recompute the parameters that Dalla Man 2007 fixes by the fasting steady state.

    Free parameters in: BW, Gb, Ib, EGPb, Vg, Vi, k1, k2, Km0, Fsnc, ke1, ke2, HEb, m1, m2, m4, kp2, kp3, kd,
    ka1, ka2 (and the rest, copied). Derived (all at basal insulin It = Ib, X = 0, no meal):
      Gpb = Gb*Vg;  Eb = ke1*max(Gpb - ke2, 0);  Gtb = (Fsnc - EGPb + Eb + k1*Gpb)/k2 ... from dGp/dt = 0
      Vm0 = (EGPb - Fsnc - Eb)*(Km0 + Gtb)/Gtb                                    from dGt/dt = 0
      kp1 = EGPb + kp2*Gpb + kp3*Ib                                              EGP(basal) = EGPb
      Ipb = Ib*Vi; m30 = HEb*m1/(1 - HEb)  (m2 = 0.6*CL/(HEb*Vi*BW), m4 = 0.4*CL/(Vi*BW) are taken as given:
      for adult#004 the tabulated ones do not match the tabulated BW, see data/README.md)
      Ilb = m2*Ipb/(m1 + m30);  u2ss = (m2 + m4)*Ipb - m1*Ilb                    dIl/dt = dIp/dt = 0
      isc1ss = u2ss/(ka1 + kd); isc2ss = kd*isc1ss/ka2
      Rdb = EGPb, PCRb = Rdb/Gb, and x0_1..x0_13 = [0, 0, 0, Gpb, Gtb, Ipb, 0, Ib, Ib, Ilb, isc1ss, isc2ss, Gpb].
    On the published subjects this reproduces the tabulated values (checked in the tests).
    """
    p = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    gpb = p["Gb"] * p["Vg"]
    eb = p["ke1"] * np.maximum(gpb - p["ke2"], 0.0)
    gtb = (p["Fsnc"] - p["EGPb"] + eb + p["k1"] * gpb) / p["k2"]
    vm0 = (p["EGPb"] - p["Fsnc"] - eb) * (p["Km0"] + gtb) / gtb
    kp1 = p["EGPb"] + p["kp2"] * gpb + p["kp3"] * p["Ib"]
    ipb = p["Ib"] * p["Vi"]
    m2, m4 = p["m2"], p["m4"]
    m30 = p["HEb"] * p["m1"] / (1.0 - p["HEb"])
    ilb = m2 * ipb / (p["m1"] + m30)
    u2ss = (m2 + m4) * ipb - p["m1"] * ilb
    isc1ss = u2ss / (p["ka1"] + p["kd"])
    isc2ss = p["kd"] * isc1ss / p["ka2"]
    zeros = np.zeros_like(gpb)
    out = dict(p)
    out.update(Gpb=gpb, Gtb=gtb, Vm0=vm0, kp1=kp1, Ipb=ipb, m30=m30, Ilb=ilb, u2ss=u2ss,
               isc1ss=isc1ss, isc2ss=isc2ss, Rdb=p["EGPb"].copy(), PCRb=p["EGPb"] / p["Gb"])
    x0 = (zeros, zeros, zeros, gpb, gtb, ipb, zeros, p["Ib"], p["Ib"], ilb, isc1ss, isc2ss, gpb)
    for i, value in enumerate(x0, start=1):
        out[f"x0_{i}"] = np.array(value, dtype=np.float64)
    return out


def _insulin_glucose_disposal_mg_per_kg_per_u(params: dict[str, np.ndarray]) -> np.ndarray:
    """Extra glucose disposed (mg/kg) per unit of insulin, model linearised at the fasting steady state.

    One U = 6000 pmol; per kg it enters plasma entirely (Isc1 -> Isc2 -> Ip), and plasma insulin is cleared at
    the effective rate c = m4 + m2*m30/(m1 + m30) (peripheral plus net hepatic clearance), so the area under
    the extra plasma concentration is 6000/(BW*Vi*c) pmol/L*min. X and XL follow I - Ib with unit gain, so the
    area times the insulin-dependent sensitivities (Vmx*Gtb/(Km0 + Gtb) for utilisation, kp3 for hepatic
    production) is the extra glucose removed.
    """
    p = params
    clearance = p["m4"] + p["m2"] * p["m30"] / (p["m1"] + p["m30"])
    sensitivity = p["Vmx"] * p["Gtb"] / (p["Km0"] + p["Gtb"]) + p["kp3"]
    return sensitivity * 6000.0 / (p["BW"] * p["Vi"] * clearance)


def model_carb_ratio_g_per_u(params: dict[str, np.ndarray]) -> np.ndarray:
    """Carbs (g) whose absorbed glucose one unit of insulin disposes of, in the linearised model.

    The bolus that makes the net (area) glucose excursion of a meal zero: f*1000*grams/BW mg/kg appear,
    :func:`_insulin_glucose_disposal_mg_per_kg_per_u` per U are removed. On the published cohort its log
    correlates with the Quest CR at r = 0.88; Quest CR is smaller (more aggressive) and capped at 25 g/U.
    """
    return _insulin_glucose_disposal_mg_per_kg_per_u(params) * params["BW"] / (params["f"] * 1000.0)


def model_correction_factor_mg_dl_per_u(params: dict[str, np.ndarray]) -> np.ndarray:
    """Glucose mass removed per U divided by the glucose distribution volume Vg (mg/dL per U), linearised.

    Only used as a relative measure (ratios between subjects), like :func:`model_carb_ratio_g_per_u`.
    """
    return _insulin_glucose_disposal_mg_per_kg_per_u(params) / params["Vg"]


def _to_unconstrained(params: dict[str, np.ndarray]) -> np.ndarray:
    cols = [np.log(params[k]) for k in _LOG_PARAMETERS]
    cols += [np.log(params[k] / (1.0 - params[k])) for k in _LOGIT_PARAMETERS]
    return np.stack(cols, axis=1)


def _from_unconstrained(z: np.ndarray) -> dict[str, np.ndarray]:
    n_log = len(_LOG_PARAMETERS)
    out = {k: np.exp(z[:, i]) for i, k in enumerate(_LOG_PARAMETERS)}
    out.update({k: 1.0 / (1.0 + np.exp(-z[:, n_log + i])) for i, k in enumerate(_LOGIT_PARAMETERS)})
    return out


def _physiologically_valid(p: dict[str, np.ndarray]) -> np.ndarray:
    return (
        (p["Gtb"] > 0) & (p["Vm0"] > 0) & (p["kp1"] > 0) & (p["u2ss"] > 0) & (p["Ilb"] > 0)
        & (p["kmin"] < p["kmax"]) & (p["d"] < p["b"])
        & (p["Gb"] >= 70.0) & (p["Gb"] <= 250.0)
    )


def sample_population(
    n: int,
    seed: int,
    base: Cohort | None = None,
    *,
    bandwidth: float = 0.5,
    age_groups: Sequence[str] | None = None,
    max_tries: int = 100,
) -> Cohort:
    """``n`` new virtual subjects drawn around the subjects of ``base`` (default: the published 30).

    Method (a variance-preserving smoothed bootstrap; Silverman 1986, *Density Estimation*, section 6.4):
      1. Each new subject gets an age group (cycling adult, adolescent, child, or the given ``age_groups``)
         and a base subject drawn uniformly from that group in ``base``.
      2. The free parameters are mapped to an unconstrained space: log for positive quantities, logit for
         fractions (b, d, f, HEb). Per age group we take the mean mu and covariance S of the base subjects
         there (this keeps the between-subject correlations, e.g. BW with Vg and CL); the UVA/Padova
         population itself was generated by sampling a joint parameter distribution (Kovatchev 2009).
      3. z_new = mu + (z_base - mu + h * e) / sqrt(1 + h^2), e ~ N(0, S), h = ``bandwidth``: a Gaussian
         kernel density estimate, shrunk so that mean and covariance of the group are preserved.
      4. Dependent parameters (basal states, Vm0, kp1, m2, m4, m30, u2ss, ...) are recomputed from the fasting
         steady state with :func:`derive_steady_state`, so every sampled subject starts at equilibrium.
         Draws that are not physiological (negative Gtb/Vm0/u2ss, kmin >= kmax, d >= b, Gb outside 70-250
         mg/dL) are redrawn (same random stream, so results depend only on ``seed``).
      5. Therapy settings follow the base subject, scaled by how the sampled physiology changes insulin
         needs, so each new subject keeps its base subject's calibration of the published Quest table:
         CR * cr_model(new)/cr_model(base), CF * cf_model(new)/cf_model(base) (:func:`model_carb_ratio_g_per_u`,
         :func:`model_correction_factor_mg_dl_per_u`), TDI * (r_basal + r_bolus)/2 with r_basal =
         basal_new/basal_base, r_bolus = cr_model(base)/cr_model(new). Age is the base subject's.
    Names are "<group>#v<seed>-<k>", k counting from 1. Deterministic for a given (n, seed, base, options).
    """
    if base is None:
        base = load_cohort()
    if int(n) != n or n < 1:
        raise ValueError(f"population size must be a positive integer, got {n!r}")
    if not bandwidth >= 0:
        raise ValueError(f"bandwidth must be >= 0, got {bandwidth!r}")
    groups_cycle = tuple(age_groups) if age_groups is not None else AGE_GROUPS
    present = set(base.age_groups)
    unknown = [g for g in groups_cycle if g not in present]
    if unknown or not groups_cycle:
        raise CohortSelectionError(f"age groups {unknown or groups_cycle} have no subjects in the base cohort")
    rng = np.random.default_rng(seed)
    z_all = _to_unconstrained(base.params)
    group_stats: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for g in set(groups_cycle):
        members = np.flatnonzero(np.asarray(base.age_groups) == g)
        mu = z_all[members].mean(axis=0)
        cov = np.cov(z_all[members], rowvar=False) if members.size > 1 else np.zeros((z_all.shape[1],) * 2)
        group_stats[g] = (members, mu, np.atleast_2d(cov))

    chosen_base = np.empty(n, dtype=np.intp)
    z_new = np.empty((n, z_all.shape[1]))
    groups = [groups_cycle[k % len(groups_cycle)] for k in range(int(n))]
    for k, g in enumerate(groups):
        members, mu, cov = group_stats[g]
        for _ in range(max_tries):
            b_idx = int(rng.choice(members))
            e = rng.multivariate_normal(np.zeros(mu.size), cov, method="eigh")
            z = mu + (z_all[b_idx] - mu + bandwidth * e) / np.sqrt(1.0 + bandwidth**2)
            candidate = {key: v[None] for key, v in base.params.items()}
            candidate.update({key: v for key, v in _from_unconstrained(z[None]).items()})
            if bool(_physiologically_valid(derive_steady_state(candidate))[0]):
                break
        else:
            raise RuntimeError(f"no physiological draw for a {g} subject after {max_tries} tries")
        chosen_base[k] = b_idx
        z_new[k] = z

    params = {key: v[chosen_base] for key, v in base.params.items()}
    params.update(_from_unconstrained(z_new))
    params = derive_steady_state(params)
    params["CL"] = params["m4"] * params["Vi"] * params["BW"] / 0.4  # bookkeeping only (the model uses m2, m4)
    bw = params["BW"]
    basal = params["u2ss"] * bw / 6000.0 * 60.0
    base_params = {key: v[chosen_base] for key, v in base.params.items()}
    cr_ratio = model_carb_ratio_g_per_u(params) / model_carb_ratio_g_per_u(base_params)
    cf_ratio = model_correction_factor_mg_dl_per_u(params) / model_correction_factor_mg_dl_per_u(base_params)
    tdi_ratio = 0.5 * (basal / base.basal_u_per_h[chosen_base] + 1.0 / cr_ratio)
    return Cohort(
        names=tuple(f"{g}#v{seed}-{k + 1}" for k, g in enumerate(groups)),
        age_groups=tuple(groups),
        params=params,
        body_weight_kg=bw,
        basal_u_per_h=basal,
        carb_ratio_g_per_u=base.carb_ratio_g_per_u[chosen_base] * cr_ratio,
        correction_factor_mg_dl_per_u=base.correction_factor_mg_dl_per_u[chosen_base] * cf_ratio,
        total_daily_insulin_u=base.total_daily_insulin_u[chosen_base] * tdi_ratio,
        age_years=base.age_years[chosen_base],
    )
