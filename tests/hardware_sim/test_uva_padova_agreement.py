"""Our vectorised UVA/Padova model against simglucose 0.2.11's own T1DPatient on identical inputs.

The fixture was produced by hardware_sim/patient/reference/make_simglucose_fixtures.py (simglucose is not
installed in CI): all 30 published subjects, 24 h, meals 45/70/80 g at 07:00/12:00/18:00 eaten at 5 g/min,
boluses carbs/CR, steady-state basal. The traces cover hypoglycaemia (a child near 31 mg/dL) and renal
excretion (above 400 mg/dL), so the clamps and the renal term are exercised.
"""

from pathlib import Path

import numpy as np
import pytest

from hardware_sim.patient.cohort import load_cohort
from hardware_sim.patient.uva_padova import UvaPadovaCohortModel

FIXTURE = Path(__file__).parent / "fixtures" / "simglucose_0_2_11_24h.npz"
TOLERANCE_MG_DL = 1.0


@pytest.fixture(scope="module")
def reference():
    with np.load(FIXTURE) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def ours(reference):
    cohort = load_cohort(",".join(str(n) for n in reference["names"]))
    model = UvaPadovaCohortModel(cohort)
    carbs = reference["carbs_g_per_min"]
    insulin = reference["insulin_u_per_min"]
    plasma = [model.plasma_glucose_mg_dl]
    inter = [model.interstitial_glucose_mg_dl]
    for t in range(carbs.size):
        model.step(carbs[t], insulin[:, t])
        plasma.append(model.plasma_glucose_mg_dl)
        inter.append(model.interstitial_glucose_mg_dl)
    return np.array(plasma).T, np.array(inter).T


def test_fixture_covers_all_thirty_subjects_for_a_day(reference):
    assert len(reference["names"]) == 30
    assert reference["plasma_glucose_mg_dl"].shape == (30, 1441)
    assert reference["carbs_g_per_min"].sum() == pytest.approx(45 + 70 + 80)
    # The reference run is not trivial: meals move glucose and some subjects go low or very high.
    assert reference["plasma_glucose_mg_dl"].max() > 400
    assert reference["plasma_glucose_mg_dl"].min() < 54


@pytest.mark.parametrize("kind, column", [("plasma", 0), ("interstitial", 1)])
def test_every_subject_matches_simglucose_within_one_mg_dl(reference, ours, kind, column):
    expected = reference[f"{kind}_glucose_mg_dl"]
    got = ours[column]
    assert got.shape == expected.shape
    worst = np.abs(got - expected).max(axis=1)
    failing = {str(n): round(float(w), 3) for n, w in zip(reference["names"], worst) if w >= TOLERANCE_MG_DL}
    assert not failing, f"{kind} glucose differs from simglucose by >= {TOLERANCE_MG_DL} mg/dL: {failing}"


def test_coarser_integration_is_measurably_worse(reference):
    """The agreement is a property of the integrator settings, not of a lenient comparison."""
    cohort = load_cohort(",".join(str(n) for n in reference["names"]))
    coarse = UvaPadovaCohortModel(cohort, substeps_per_min=1)
    coarse_error = []
    carbs, insulin = reference["carbs_g_per_min"], reference["insulin_u_per_min"]
    for t in range(carbs.size):
        coarse.step(carbs[t], insulin[:, t])
        coarse_error.append(np.abs(coarse.plasma_glucose_mg_dl - reference["plasma_glucose_mg_dl"][:, t + 1]).max())
    assert max(coarse_error) > 0.05  # RK4 with 1-min steps: visibly off (about 0.3 mg/dL), yet bounded
    assert max(coarse_error) < 5


def test_fixture_inputs_are_the_documented_protocol(reference):
    """The stored inputs are exactly what the generator's protocol gives for the bundled cohort data."""
    from hardware_sim.patient.reference.make_simglucose_fixtures import protocol

    cohort = load_cohort(",".join(str(n) for n in reference["names"]))
    carbs, insulin = protocol(cohort.basal_u_per_h / 60.0, cohort.carb_ratio_g_per_u)
    np.testing.assert_array_equal(carbs, reference["carbs_g_per_min"])
    np.testing.assert_allclose(insulin, reference["insulin_u_per_min"], rtol=1e-12)
    assert carbs.max() == 5.0  # simglucose's eating rate
    assert np.count_nonzero(insulin[0] > cohort.basal_u_per_h[0] / 60.0 * 1.001) == 3  # one bolus per meal
