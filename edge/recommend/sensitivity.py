"""Where doses follow the twin's insulin-sensitivity estimate, and where they do not.

The twin estimates sensitivity relative to the therapy settings as a log-ratio ``theta`` (``exp(theta)`` times the
configured sensitivity). The rules:

* LESS sensitive (theta < 0) never raises a dose: predictions floor theta at 0 and the ISF a correction divides
  by is never below the configured one. That evidence goes to the clinician's settings review.
* MORE sensitive may shrink a correction: the ISF rises to at most :data:`MAX_TWIN_ISF_FACTOR` times the
  configured one, and the predictions behind the correction basis, the low warnings and the rescue carbs use the
  twin's belief (lower predictions: smaller corrections, earlier suspensions).
* The person's own insulin use may shrink a correction too (:func:`correction_isf_mg_dl_per_u`): once the hub
  holds a day of pump history, a correction above target divides by AndroidAPS's dynamic ISF,
  1800 / (TDD x ln(glucose / 75 + 1)), when that is higher than the ISF above (at most
  :data:`MAX_TDD_ISF_FACTOR` times the configured one). Never a lower one: it can only take insulin away.
* It never cuts a MEAL bolus: carbs / CR is the clinician's prescription, so every prediction that judges a meal
  (the predicted-minimum guard, the advice's own trajectory, pre-bolus timing) runs at the settings' sensitivity
  (``HypotheticalAction.at_settings_sensitivity``).

Why the last rule: for a child after rescue carbs and a CGM reading low, the twin's estimate ran to 3.5x the
setting; its predictions then showed a 99 g dinner's 4.0 U bolus taking glucose to 32 mg/dL, the guard cut it to
1.8 U, and glucose reached 379 mg/dL. The estimate is confounded by unannounced carbs and sensor error, and one
sensitivity cannot describe a carb ratio that fits and a correction factor that does not.

Measured in silico (30 subjects x 3 days x seeds 1-3, challenging scenario: ``glucotwin trial --arms glucotwin
--days 3 --seeds 1,2,3 --scenario challenging``), time out of range for adults / adolescents / children, time
below 54 mg/dL and rescue carbs per day:

* before (meals judged with the twin's unbounded belief): 8.3 / 20.1 / 23.4 %; 0.1 / 0.3 / 0.4 %; 31 / 49 / 78 g;
* these rules: 7.8 / 19.8 / 20.5 %; 0.1 / 0.3 / 0.4 %; 35 / 51 / 91 g;
* the settings' sensitivity everywhere (the twin's belief ignored): 6.9 / 19.0 / 19.5 %, but 0.1 / 0.4 / 0.4 %
  below 54, 41 / 64 / 118 g of rescue carbs, 14 % more insulin for children and, over 14 days (seed 1), time
  below 54 of 0.6 % for adolescents and children: insulin given and then eaten back. Not taken.

Why the TDD rule: the published cohort's correction factors are 1.25-4.1x more aggressive than 1800 / TDD, while
its carb ratios match 500 / TDD. adolescent#007 (setting 12.5, TDD rule 41 mg/dL/U) got 10 U corrections at
400 mg/dL and then fell to 20-50 mg/dL. In silico (same protocol, 3 days, with the pre-bolus timing followed;
here the trial arm knew TDD from the first minute, while the hub and the arm now wait for a day of history):

* settings' ISF: 6.4 / 18.8 / 20.8 % out of range; 0.06 / 0.17 / 0.23 % below 54; 35 / 48 / 86 g of rescue carbs;
* the TDD rule (kept): 6.7 / 19.2 / 21.2 %; 0.00 / 0.16 / 0.16 %; 28 / 38 / 76 g;
* with the divisor AndroidAPS uses for regular rapid-acting insulin (55): 7.0 / 19.0 / 20.4 %, but 0.01 / 0.14 /
  0.25 % below 54;
* the twin's predictions also run at the TDD-based sensitivity (consistent IOB effect, as AndroidAPS does):
  9.2 / 21.4 / 22.4 %, 0.00 / 0.00 / 0.08 % below 54 — the fewest lows, at 2.5 points more time out of range for
  adults; only for the correction basis: 7.9 / 19.6 / 21.7 %, 0.00 / 0.00 / 0.16 %. Not taken.
* 14 days (``--days 14``, seeds 1-3): the settings' ISF (the sixth session's code, eating at once) 7.0 / 21.0 /
  22.4 % out of range, 0.07 / 0.26 / 0.32 % below 54, 38 / 55 / 80 g; with the TDD rule and the pre-bolus timing
  6.8 / 20.4 / 22.4 %, 0.04 / 0.23 / 0.26 %, 34 / 49 / 79 g. Counting insulin on board at the TDD-based ISF in
  the correction basis as well (seeds 1-2): 0.03 / 0.17 / 0.27 % below 54 but 7.2 / 22.9 / 23.3 % out of range
  (against 6.6 / 20.8 / 22.0 % for the same seeds). Not taken.
"""

from __future__ import annotations

import math

MAX_TWIN_ISF_FACTOR = 1.5
TDD_RULE_MG_DL = 1800.0  # the "1800 rule": ISF ~ 1800 / TDD
INSULIN_DIVISOR_MG_DL = 75.0  # AndroidAPS's dynamic ISF: 75 (its Lyumjev value; 55 for regular rapid-acting)
MAX_TDD_ISF_FACTOR = 4.0  # the TDD-based ISF raises the configured one at most this much


def trusted_isf_mg_dl_per_u(configured_mg_dl_per_u: float, twin_estimate_mg_dl_per_u: float | None) -> float:
    """The ISF a correction uses: the configured one, or the twin's when it is higher (less insulin), at most
    :data:`MAX_TWIN_ISF_FACTOR` times the configured value."""
    twin = twin_estimate_mg_dl_per_u
    if twin is None or not math.isfinite(twin) or twin <= configured_mg_dl_per_u:
        return configured_mg_dl_per_u
    return min(twin, MAX_TWIN_ISF_FACTOR * configured_mg_dl_per_u)


def tdd_isf_mg_dl_per_u(total_daily_insulin_u: float | None, glucose_mg_dl: float | None) -> float | None:
    """AndroidAPS's dynamic ISF, 1800 / (TDD x ln(glucose / 75 + 1)): the ISF the person's own insulin use
    implies at this glucose (lower when glucose is high); None without a TDD or a glucose."""
    if (total_daily_insulin_u is None or glucose_mg_dl is None or not math.isfinite(total_daily_insulin_u)
            or not math.isfinite(glucose_mg_dl) or total_daily_insulin_u <= 0):
        return None
    return TDD_RULE_MG_DL / (total_daily_insulin_u * math.log(max(glucose_mg_dl, 40.0) / INSULIN_DIVISOR_MG_DL + 1.0))


def correction_isf_mg_dl_per_u(trusted_mg_dl_per_u: float, tdd_isf: float | None,
                               configured_mg_dl_per_u: float) -> float:
    """The ISF a correction above target divides by: the :func:`trusted_isf_mg_dl_per_u`, raised (less insulin,
    never more) to the :func:`tdd_isf_mg_dl_per_u` when that is higher, at most :data:`MAX_TDD_ISF_FACTOR` times
    the configured value."""
    if tdd_isf is None:
        return trusted_mg_dl_per_u
    return max(trusted_mg_dl_per_u, min(tdd_isf, MAX_TDD_ISF_FACTOR * configured_mg_dl_per_u))
