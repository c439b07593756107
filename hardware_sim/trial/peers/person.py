"""What the person does around a peer algorithm (the same for OpenAPS and Loop, so the arms compare algorithms).

* Meals: the announced carbs are entered; OpenAPS users bolus with the pump's wizard (``carbs / CR``) and
  leave corrections to the loop (SMB); Loop users accept Loop's recommended bolus (see ``loop_arm``).
* Lows: the "15-15 rule" (15 g of fast carbs when the CGM reads < 70 mg/dL, at most every 15 min), not entered
  into the algorithm, as most users do. The GlucoTwin arm instead eats what the hub advises.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class PersonHabits:
    rescue_below_mg_dl: float = 70.0
    rescue_carbs_g: float = 15.0
    rescue_interval_min: float = 15.0


class RescueRule:
    """The 15-15 rule, one person."""

    def __init__(self, habits: PersonHabits | None = None) -> None:
        self.habits = habits or PersonHabits()
        self._last_min = -math.inf

    def carbs_g(self, now_min: float, cgm_mg_dl: float) -> float:
        h = self.habits
        if not math.isfinite(cgm_mg_dl) or cgm_mg_dl >= h.rescue_below_mg_dl:
            return 0.0
        if now_min - self._last_min < h.rescue_interval_min:
            return 0.0
        self._last_min = now_min
        return h.rescue_carbs_g
