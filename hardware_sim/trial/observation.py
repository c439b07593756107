"""What a trial arm may see and do: the boundary between the simulated world and a dosing policy.

An arm sees ONLY what a real hub sees: CGM readings (the sensor model's output, gaps as NaN), what the pump
reports (reservoir, rates, delivered insulin as the pump believes, alarms), the carbs the person announced
(with their counting errors), the clock, and the therapy settings a clinician programmed. It never sees
plasma or interstitial glucose, the model state, what was really eaten, or the scenario's hidden modifiers
(there are no such fields here; a test checks it).

Everything is batched over M rows (subject x seed) as arrays, so a vectorised policy costs a few numpy
operations per decision. :class:`PerSubjectArm` adapts a policy written for one person at a time (OpenAPS,
Loop, the hub's own recommender) by slicing the batch with :meth:`ArmObservation.row`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray


#: The longest a person is asked to wait between a bolus and the meal it covers (pre-bolus advice).
MAX_EAT_AFTER_MIN = 30.0


class ArmError(ValueError):
    """An arm returned an action of the wrong shape or with negative / non-finite doses."""


@dataclass(frozen=True)
class ArmSetup:
    """Static facts a clinician and the hub know about each row, given once before the run; arrays (M,)."""

    row_labels: tuple[str, ...]
    age_groups: tuple[str, ...]
    body_weight_kg: NDArray[np.float64]
    basal_u_per_h: NDArray[np.float64]  # the programmed (flat) basal rate
    carb_ratio_g_per_u: NDArray[np.float64]
    correction_factor_mg_dl_per_u: NDArray[np.float64]
    total_daily_insulin_u: NDArray[np.float64]
    decision_interval_min: float
    start_time_of_day_min: float

    @property
    def n_rows(self) -> int:
        return len(self.row_labels)

    def row(self, i: int) -> "ArmSetup":
        def pick(value):
            return value[i : i + 1] if isinstance(value, np.ndarray) else value

        return ArmSetup(
            row_labels=(self.row_labels[i],), age_groups=(self.age_groups[i],),
            **{f.name: pick(getattr(self, f.name)) for f in fields(self)
               if f.name not in {"row_labels", "age_groups"}},
        )


@dataclass(frozen=True)
class ArmObservation:
    """One decision instant for M rows. History arrays are read-only, shape (M, K), oldest first, the last
    column being now; ``history_times_min`` (K,) gives their trial minutes."""

    time_min: float
    time_of_day_min: float
    history_times_min: NDArray[np.float64]
    cgm_glucose_mg_dl: NDArray[np.float64]  # (M, K) sensor readings, NaN = no reading
    pump_delivered_u: NDArray[np.float64]  # (M, K) insulin the pump reports delivering in the 5 min before
    announced_carbs_g: NDArray[np.float64]  # (M, K) carbs entered in the 5 min up to each sample (0 = none)
    reservoir_u: NDArray[np.float64]  # (M,)
    scheduled_basal_u_per_h: NDArray[np.float64]  # (M,)
    temp_basal_u_per_h: NDArray[np.float64]  # (M,) NaN = none running
    temp_basal_remaining_min: NDArray[np.float64]  # (M,)
    bolus_in_progress_u: NDArray[np.float64]  # (M,) still to be delivered
    occlusion_alarm: NDArray[np.bool_]  # (M,)
    reservoir_empty: NDArray[np.bool_]  # (M,)

    @property
    def n_rows(self) -> int:
        return self.reservoir_u.shape[0]

    @property
    def latest_cgm_mg_dl(self) -> NDArray[np.float64]:
        """The reading of this instant (M,), NaN when there is none."""
        return self.cgm_glucose_mg_dl[:, -1]

    @property
    def carbs_announced_now_g(self) -> NDArray[np.float64]:
        """Carbs entered since the previous decision (M,)."""
        return self.announced_carbs_g[:, -1]

    def row(self, i: int) -> "ArmObservation":
        """The same observation for row ``i`` only (arrays keep a leading axis of length 1)."""
        values = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray) and f.name != "history_times_min":
                value = value[i : i + 1]
            values[f.name] = value
        return ArmObservation(**values)


@dataclass(frozen=True)
class ArmAction:
    """What an arm asks for, arrays (M,): a bolus (U, 0 = none), a temp basal (U/h, NaN = leave as is; with
    duration 0 = cancel), rescue carbs the person is told to eat (g, 0 = none), and how long the person should
    wait before starting the meal announced now (min, 0 = eat now; the pre-bolus advice, at most
    :data:`MAX_EAT_AFTER_MIN`; None = nobody waits)."""

    bolus_u: NDArray[np.float64]
    temp_basal_u_per_h: NDArray[np.float64]
    temp_basal_duration_min: NDArray[np.float64]
    rescue_carbs_g: NDArray[np.float64]
    eat_after_min: NDArray[np.float64] | None = None

    @classmethod
    def nothing(cls, n_rows: int) -> "ArmAction":
        return cls(np.zeros(n_rows), np.full(n_rows, np.nan), np.zeros(n_rows), np.zeros(n_rows))

    def eat_after(self, n_rows: int) -> NDArray[np.float64]:
        """The wait before the announced meal, zeros when the arm gives no timing."""
        return np.zeros(n_rows) if self.eat_after_min is None else np.asarray(self.eat_after_min, dtype=float)

    def validated(self, n_rows: int) -> "ArmAction":
        """Return self if well formed for ``n_rows`` rows, else raise :class:`ArmError`."""
        for f in fields(self):
            if f.name == "eat_after_min" and self.eat_after_min is None:  # no timing given
                continue
            value = np.asarray(getattr(self, f.name), dtype=float)
            if value.shape != (n_rows,):
                raise ArmError(f"action field {f.name} has shape {value.shape}, expected ({n_rows},)")
        wait = self.eat_after(n_rows)
        if not np.all(np.isfinite(wait)) or (wait < 0).any() or (wait > MAX_EAT_AFTER_MIN).any():
            raise ArmError(f"eat_after_min must be finite, between 0 and {MAX_EAT_AFTER_MIN:g} min")
        for name in ("bolus_u", "rescue_carbs_g", "temp_basal_duration_min"):
            value = np.asarray(getattr(self, name), dtype=float)
            if not np.all(np.isfinite(value)) or (value < 0).any():
                raise ArmError(f"action field {name} must be finite and >= 0")
        rate = np.asarray(self.temp_basal_u_per_h, dtype=float)
        if np.isinf(rate).any() or (rate[~np.isnan(rate)] < 0).any():
            raise ArmError("temp_basal_u_per_h must be >= 0 or NaN")
        return self

    @staticmethod
    def stack(actions: list["ArmAction"]) -> "ArmAction":
        def column(action: "ArmAction", name: str) -> NDArray[np.float64]:
            if name == "eat_after_min":
                return action.eat_after(np.asarray(action.bolus_u).reshape(-1).shape[0])
            return np.asarray(getattr(action, name), dtype=float).reshape(-1)

        return ArmAction(*(np.concatenate([column(a, f.name) for a in actions]) for f in fields(ArmAction)))


@runtime_checkable
class Arm(Protocol):
    """A dosing policy over M rows. ``start`` is called once per run (and resets any memory)."""

    name: str

    def start(self, setup: ArmSetup) -> None: ...

    def decide(self, observation: ArmObservation) -> ArmAction: ...


class SubjectPolicy(Protocol):
    """A policy for ONE person: observation arrays have a leading axis of length 1; returns an action of
    length-1 arrays."""

    def decide(self, observation: ArmObservation) -> ArmAction: ...


class PerSubjectArm:
    """Run a one-person policy for every row: ``policy_factory(setup_of_one_row)`` builds one policy per row."""

    def __init__(self, name: str, policy_factory: Callable[[ArmSetup], SubjectPolicy]):
        self.name = name
        self._factory = policy_factory
        self._policies: list[SubjectPolicy] = []

    def start(self, setup: ArmSetup) -> None:
        self._policies = [self._factory(setup.row(i)) for i in range(setup.n_rows)]

    def decide(self, observation: ArmObservation) -> ArmAction:
        actions = [policy.decide(observation.row(i)).validated(1) for i, policy in enumerate(self._policies)]
        return ArmAction.stack(actions)
