"""How far doses follow the twin's insulin-sensitivity estimate: one bound, for the arithmetic and the predictions.

The twin estimates sensitivity relative to the therapy settings as a log-ratio ``theta`` (``exp(theta)`` times the
configured sensitivity). Doses may follow it only towards LESS insulin, and only as far as
:data:`MAX_TWIN_ISF_FACTOR` times the configured ISF; the ISF the recommender divides by and the ``theta`` its
predictions run with obey the same bound, so the numbers an advice shows and the trajectories it was checked
against tell one story.

The bound is 1.0: doses use the clinician's sensitivity, and the twin's estimate is evidence for the clinician's
settings review (``edge.settings_review``), never a dose change. Measured, not assumed:

* a twin that believes the person LESS sensitive would raise doses; that was never allowed;
* a twin that believes the person MORE sensitive ran, for a child after rescue carbs and a CGM reading low, to
  3.5x the setting, and predictions made with it cut a 99 g dinner's bolus from 4.0 to 1.8 U (glucose then
  reached 379 mg/dL). The estimate is confounded by unannounced carbs and sensor error.

In silico (30 subjects x 3 days x seeds 1-3, challenging scenario; ``glucotwin trial --arms glucotwin --days 3
--seeds 1,2,3 --scenario challenging``), time out of range for adults / adolescents / children was 8.3 / 20.1 /
23.4 % with the earlier rule (ISF up to 1.5x, predictions with the twin's unbounded "more sensitive" belief) and
6.9 / 19.0 / 19.5 % with this bound; time below 54 mg/dL 0.1 / 0.3 / 0.4 % and 0.1 / 0.4 / 0.4 %. A bound of 1.5x
for the ISF and the predictions alike gave 1-1.5 points more time out of range than 1.0 in every group.
"""

from __future__ import annotations

import math

MAX_TWIN_ISF_FACTOR = 1.0
MAX_TWIN_LOG_SENSITIVITY = math.log(MAX_TWIN_ISF_FACTOR)


def trusted_isf_mg_dl_per_u(configured_mg_dl_per_u: float, twin_estimate_mg_dl_per_u: float | None) -> float:
    """The ISF a dose uses: the configured one, or the twin's when it is higher (less insulin), at most
    :data:`MAX_TWIN_ISF_FACTOR` times the configured value."""
    twin = twin_estimate_mg_dl_per_u
    if twin is None or not math.isfinite(twin) or twin <= configured_mg_dl_per_u:
        return configured_mg_dl_per_u
    return min(twin, MAX_TWIN_ISF_FACTOR * configured_mg_dl_per_u)


def trusted_log_sensitivity(theta: float) -> float:
    """The twin's log-sensitivity as predictions for dosing use it: clipped to [0, ln MAX_TWIN_ISF_FACTOR]."""
    return min(max(theta, 0.0), MAX_TWIN_LOG_SENSITIVITY)
