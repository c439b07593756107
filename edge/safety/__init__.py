"""Hard safety limits: every dose the hub recommends passes through :func:`apply_hard_limits`.

The limits are documented in ``limits.py`` (values and sources) and each rule in ``rules.py`` is a named,
separately tested unit, in the spirit of oref0's guards without oref0's one-long-function shape.
"""

from .limits import ABSOLUTE_BOUNDS, LimitOutOfBounds, SafetyLimits, default_limits
from .rules import (
    RULES,
    CgmQuality,
    DoseProposal,
    DosingContext,
    LimitedDose,
    RuleApplication,
    SafetyViolation,
    apply_hard_limits,
    assert_within_limits,
    floor_to_increment,
    limit_violations,
    within_stacking_window,
)

__all__ = [
    "ABSOLUTE_BOUNDS",
    "RULES",
    "CgmQuality",
    "DoseProposal",
    "DosingContext",
    "LimitOutOfBounds",
    "LimitedDose",
    "RuleApplication",
    "SafetyLimits",
    "SafetyViolation",
    "apply_hard_limits",
    "assert_within_limits",
    "floor_to_increment",
    "default_limits",
    "limit_violations",
    "within_stacking_window",
]
