"""Dose and meal advice: proposals from the twin's what-if predictions, bounded by the hard limits."""

from .advice import Advice, AdviceKind, recommend
from .prediction import HypotheticalAction, PredictedGlucose, Predictor
from .snapshot import HubSnapshot

__all__ = [
    "Advice",
    "AdviceKind",
    "HubSnapshot",
    "HypotheticalAction",
    "PredictedGlucose",
    "Predictor",
    "recommend",
]
