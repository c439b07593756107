"""Where doses follow the twin's insulin-sensitivity estimate, and where they do not.

The twin estimates sensitivity relative to the therapy settings as a log-ratio ``theta`` (``exp(theta)`` times the
configured sensitivity). The rules:

* LESS sensitive (theta < 0) never raises a dose: predictions floor theta at 0 and the ISF a correction divides
  by is never below the configured one. That evidence goes to the clinician's settings review.
* MORE sensitive may shrink a correction: the ISF rises to at most :data:`MAX_TWIN_ISF_FACTOR` times the
  configured one, and the predictions behind the correction basis, the low warnings and the rescue carbs use the
  twin's belief (lower predictions: smaller corrections, earlier suspensions).
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
"""

from __future__ import annotations

import math

MAX_TWIN_ISF_FACTOR = 1.5


def trusted_isf_mg_dl_per_u(configured_mg_dl_per_u: float, twin_estimate_mg_dl_per_u: float | None) -> float:
    """The ISF a correction uses: the configured one, or the twin's when it is higher (less insulin), at most
    :data:`MAX_TWIN_ISF_FACTOR` times the configured value."""
    twin = twin_estimate_mg_dl_per_u
    if twin is None or not math.isfinite(twin) or twin <= configured_mg_dl_per_u:
        return configured_mg_dl_per_u
    return min(twin, MAX_TWIN_ISF_FACTOR * configured_mg_dl_per_u)
