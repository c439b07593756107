"""Adapter: the twin's what-if engine (``models.whatif``) as the recommender's :class:`Predictor`.

The same random draws are used for every call (a fixed seed: common random numbers), so comparing two doses
compares the doses, not the sampling noise; the bisection in the recommender relies on that. Limits of the
twin's model, said plainly: its meal absorption has one time constant, so ``carbs_absorption_min`` (fast
rescue carbs) is not modelled and is ignored here; ``carbs_delay_min`` (eating after a pre-bolus) is: the carbs
enter the twin's gut that much later.

Sensitivity: by default the predictions never assume the person LESS sensitive to insulin than the therapy
settings say (the twin's log-sensitivity ``theta`` is floored at 0 for the prediction only). A twin that has
come to believe in insulin resistance would otherwise predict a higher glucose and so raise every correction
and lower every low warning; that evidence belongs in the clinician's settings review, as the recommender's
own choice of ISF already says. ``trust_lower_sensitivity=True`` gives the twin's unmodified belief. An action
``at_settings_sensitivity`` is predicted with theta = 0 whatever the twin believes: that is how meal boluses are
judged (:mod:`edge.recommend.sensitivity`). Each belief has its own state and draws, from the same seed, so the
two kinds of prediction differ only by the sensitivity.

Basal: ``baseline_basal_u_per_h`` is the rate predictions assume from now on, the programmed schedule: a temp
basal being considered is part of the action, and one already running ends within its 30 min. Without it the
twin's last-fed rate (possibly a temp) would be assumed for the whole 6-h horizon: a running high temp then
predicts a low that calls for a suspension, and the running suspension predicts a high that calls for a high
temp again (the advice flip-flopped every 5 min in silico before this was passed).
"""

from __future__ import annotations

import numpy as np

from models.twin.mvp_model import THETA
from models.whatif import Draws, Scenario, blocks, draw, simulate

from .prediction import HypotheticalAction, PredictedGlucose

RECOMMENDER_HORIZON_MIN = 360.0  # the insulin's whole duration, so "eventual" glucose includes all of IOB
RECOMMENDER_SAMPLES = 64
RECOMMENDER_STEP_MIN = 10.0  # output every 10 min (Euler sub-steps of 5 min): dosing needs shape, not detail


class TwinPredictor:
    """Predictions for ONE decision: it caches trajectories and random draws for the twin's state when first used."""

    def __init__(self, twin: object, *, horizon_min: float = RECOMMENDER_HORIZON_MIN,
                 n_samples: int = RECOMMENDER_SAMPLES, seed: int = 0, trust_lower_sensitivity: bool = False,
                 baseline_basal_u_per_h: float | None = None) -> None:
        self.twin = twin
        self.baseline_basal_u_per_h = baseline_basal_u_per_h
        self.trust_lower_sensitivity = trust_lower_sensitivity
        self.horizon_min = horizon_min
        self.n_samples = n_samples
        self.seed = seed
        self._cache: dict[HypotheticalAction, PredictedGlucose] = {}
        # The state and draws per belief (at the settings' sensitivity or not), made once: every prediction of
        # this advice with the same belief shares them.
        self._beliefs: dict[bool, tuple[np.ndarray, Draws]] = {}

    def _state(self, at_settings_sensitivity: bool) -> tuple[np.ndarray, Draws]:
        """The twin's state as predictions use it (theta floored at 0 unless lower sensitivity is trusted; 0 at
        the settings' sensitivity), with its random draws."""
        belief = self._beliefs.get(at_settings_sensitivity)
        if belief is None:
            twin = self.twin
            x = np.array(twin.x, dtype=float)  # type: ignore[attr-defined]
            if at_settings_sensitivity:
                x[THETA] = 0.0
            elif not self.trust_lower_sensitivity:
                x[THETA] = max(x[THETA], 0.0)
            draws = draw(x, twin.P, self.n_samples,  # type: ignore[attr-defined]
                         blocks(self.horizon_min, RECOMMENDER_STEP_MIN), RECOMMENDER_STEP_MIN, self.seed,
                         q_per_min=twin.filter.q_per_min, r_mg_dl2=twin.filter.r_mg_dl2)  # type: ignore[attr-defined]
            belief = self._beliefs[at_settings_sensitivity] = (x, draws)
        return belief

    def predict(self, action: HypotheticalAction) -> PredictedGlucose:
        cached = self._cache.get(action)
        if cached is not None:
            return cached
        scenario = Scenario(
            bolus_u=action.bolus_u,
            carbs_g=action.carbs_g,
            carbs_delay_min=action.carbs_delay_min,
            temp_basal_u_per_h=action.temp_basal_u_per_h,
            temp_basal_duration_min=action.temp_basal_duration_min if action.temp_basal_u_per_h is not None else 0.0,
        )
        twin = self.twin
        x, draws = self._state(action.at_settings_sensitivity)
        basal_u_per_h = self.baseline_basal_u_per_h
        if basal_u_per_h is None:
            basal_u_per_h = twin.basal_u_per_h  # type: ignore[attr-defined]
        (trajectory,) = simulate(
            x, twin.P, twin.params, basal_u_per_h, (scenario,),  # type: ignore[attr-defined]
            horizon_min=self.horizon_min, step_min=RECOMMENDER_STEP_MIN, substep_min=RECOMMENDER_STEP_MIN / 2,
            n_samples=self.n_samples, seed=self.seed, q_per_min=twin.filter.q_per_min,  # type: ignore[attr-defined]
            r_mg_dl2=twin.filter.r_mg_dl2, draws=draws,  # type: ignore[attr-defined]
        )
        result = PredictedGlucose(trajectory.minutes, trajectory.mean_mg_dl, trajectory.lower_95_mg_dl,
                                  trajectory.upper_95_mg_dl, action)
        self._cache[action] = result
        return result
