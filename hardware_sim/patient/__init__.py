"""UVA/Padova S2008 virtual patients: the published cohort and a vectorised cohort simulator."""

from hardware_sim.patient.cohort import Cohort, CohortSelectionError, concatenate, load_cohort, sample_population
from hardware_sim.patient.uva_padova import STATE_NAMES, UvaPadovaCohortModel

__all__ = [
    "STATE_NAMES",
    "Cohort",
    "CohortSelectionError",
    "UvaPadovaCohortModel",
    "concatenate",
    "load_cohort",
    "sample_population",
]
