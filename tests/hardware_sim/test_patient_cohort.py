"""Cohort loading, selection, replication and population sampling (hardware_sim.patient.cohort)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware_sim.patient.cohort import (
    AGE_GROUPS,
    Cohort,
    CohortSelectionError,
    concatenate,
    derive_steady_state,
    load_cohort,
    sample_population,
)

PER_SUBJECT = ("body_weight_kg", "basal_u_per_h", "carb_ratio_g_per_u", "correction_factor_mg_dl_per_u",
               "total_daily_insulin_u", "age_years")


def test_published_cohort_has_thirty_subjects_ten_per_group():
    cohort = load_cohort()
    assert cohort.size == len(cohort) == 30
    for group in AGE_GROUPS:
        members = [n for n, g in zip(cohort.names, cohort.age_groups) if g == group]
        assert len(members) == 10
        assert all(n.startswith(group + "#") for n in members)
    assert len(set(cohort.names)) == 30


def test_every_quantity_has_one_value_per_subject():
    cohort = load_cohort()
    for label in PER_SUBJECT:
        assert getattr(cohort, label).shape == (30,)
    for key, value in cohort.params.items():
        assert value.shape == (30,), key
        assert np.all(np.isfinite(value)), key
    assert cohort.initial_state.shape == (30, 13)


def test_basal_rate_is_u2ss_converted_to_units_per_hour():
    cohort = load_cohort()
    expected = cohort.params["u2ss"] * cohort.params["BW"] / 6000.0 * 60.0
    np.testing.assert_allclose(cohort.basal_u_per_h, expected)
    assert np.all((cohort.basal_u_per_h > 0.2) & (cohort.basal_u_per_h < 3.0))


def test_therapy_settings_come_from_quest_table():
    cohort = load_cohort("adolescent#001,child#010")
    np.testing.assert_allclose(cohort.carb_ratio_g_per_u, [12, 18])
    np.testing.assert_allclose(cohort.correction_factor_mg_dl_per_u, [15.0360283441, 29.222745246])
    np.testing.assert_allclose(cohort.total_daily_insulin_u, [36.7339146827, 20.6516964887])
    np.testing.assert_allclose(cohort.age_years, [18, 12])


@pytest.mark.parametrize("selection, group", [("adults", "adult"), ("adolescents", "adolescent"),
                                               ("children", "child")])
def test_group_selection(selection, group):
    cohort = load_cohort(selection)
    assert cohort.size == 10
    assert set(cohort.age_groups) == {group}


def test_name_selection_keeps_order_and_values():
    full = load_cohort()
    cohort = load_cohort(" child#003 , adult#001")
    assert cohort.names == ("child#003", "adult#001")
    for i, name in enumerate(cohort.names):
        j = full.names.index(name)
        assert cohort.params["Vmx"][i] == full.params["Vmx"][j]
        assert cohort.body_weight_kg[i] == full.body_weight_kg[j]


@pytest.mark.parametrize("selection", ["", " , ", "adult#011", "grownups", "adult#1"])
def test_bad_selection_is_a_typed_error(selection):
    with pytest.raises(CohortSelectionError):
        load_cohort(selection)


def test_cohort_arrays_are_read_only():
    cohort = load_cohort("adults")
    with pytest.raises(ValueError):
        cohort.params["Vmx"][0] = 1.0
    with pytest.raises(ValueError):
        cohort.basal_u_per_h[0] = 1.0


def test_repeat_tiles_subjects_in_order():
    cohort = load_cohort("adult#001,child#002")
    rep = cohort.repeat(3)
    assert rep.size == 6
    assert rep.names == ("adult#001", "child#002") * 3
    np.testing.assert_array_equal(rep.params["BW"], np.tile(cohort.params["BW"], 3))
    with pytest.raises(ValueError):
        cohort.repeat(0)


def test_concatenate_joins_cohorts():
    joined = concatenate([load_cohort("adults"), load_cohort("children")])
    assert joined.size == 20
    assert joined.age_groups == ("adult",) * 10 + ("child",) * 10
    np.testing.assert_array_equal(joined.carb_ratio_g_per_u[10:], load_cohort("children").carb_ratio_g_per_u)


def test_mismatched_shapes_are_rejected():
    cohort = load_cohort("adults")
    with pytest.raises(ValueError):
        Cohort(names=cohort.names, age_groups=cohort.age_groups, params={"BW": np.ones(3)},
               body_weight_kg=cohort.body_weight_kg, basal_u_per_h=cohort.basal_u_per_h,
               carb_ratio_g_per_u=cohort.carb_ratio_g_per_u,
               correction_factor_mg_dl_per_u=cohort.correction_factor_mg_dl_per_u,
               total_daily_insulin_u=cohort.total_daily_insulin_u)


def test_derived_steady_state_reproduces_the_published_table():
    cohort = load_cohort()
    derived = derive_steady_state(cohort.params)
    for key in ("Gpb", "Gtb", "Vm0", "kp1", "Ipb", "m30", "Ilb", "u2ss", "isc1ss", "isc2ss", "Rdb", "PCRb",
                *(f"x0_{i}" for i in range(1, 14))):
        np.testing.assert_allclose(derived[key], cohort.params[key], rtol=1e-6, atol=1e-12, err_msg=key)


def test_clearance_rates_follow_cl_except_the_documented_quirk():
    p = load_cohort().params
    names = load_cohort().names
    m2 = 0.6 * p["CL"] / (p["HEb"] * p["Vi"] * p["BW"])
    mismatched = [n for n, a, b in zip(names, m2, p["m2"]) if not np.isclose(a, b, rtol=1e-6)]
    assert mismatched == ["adult#004"]  # data/README.md: its m2, m4 correspond to BW = 66.6 kg


def test_sample_population_is_reproducible_by_seed():
    a = sample_population(12, seed=7)
    b = sample_population(12, seed=7)
    c = sample_population(12, seed=8)
    assert a.names == b.names
    for key in a.params:
        np.testing.assert_array_equal(a.params[key], b.params[key])
    assert not np.allclose(a.params["Vmx"], c.params["Vmx"])


def test_sample_population_shapes_groups_and_consistency():
    pop = sample_population(30, seed=3)
    assert pop.size == 30
    assert pop.age_groups.count("adult") == pop.age_groups.count("child") == 10
    assert set(pop.params) == set(load_cohort().params)
    for label in PER_SUBJECT:
        assert getattr(pop, label).shape == (30,)
    # Steady-state parameters are recomputed from the sampled free ones.
    again = derive_steady_state(pop.params)
    for key in ("Vm0", "kp1", "u2ss", "x0_5", "x0_10"):
        np.testing.assert_allclose(again[key], pop.params[key], rtol=1e-12)
    np.testing.assert_allclose(pop.params["m4"], 0.4 * pop.params["CL"] / (pop.params["Vi"] * pop.params["BW"]))
    np.testing.assert_allclose(pop.basal_u_per_h, pop.params["u2ss"] * pop.params["BW"] / 100.0)
    assert np.all(pop.params["Vm0"] > 0) and np.all(pop.params["x0_5"] > 0)
    assert np.all((pop.params["b"] > 0) & (pop.params["b"] < 1))
    # Insulin needs of children stay below those of adults on average.
    groups = np.array(pop.age_groups)
    assert pop.total_daily_insulin_u[groups == "child"].mean() < pop.total_daily_insulin_u[groups == "adult"].mean()


def test_sample_population_spread_comes_from_group():
    base = load_cohort()
    pop = sample_population(300, seed=11, age_groups=["child"])
    assert set(pop.age_groups) == {"child"}
    child_bw = base.body_weight_kg[np.array(base.age_groups) == "child"]
    # Variance-preserving smoothed bootstrap: group mean of log BW preserved within sampling error.
    assert abs(np.log(pop.body_weight_kg).mean() - np.log(child_bw).mean()) < 0.1
    assert len(set(np.round(pop.body_weight_kg, 6))) == 300  # not copies of the 10 base subjects


@settings(max_examples=15, deadline=None)
@given(n=st.integers(min_value=1, max_value=8), seed=st.integers(min_value=0, max_value=2**31))
def test_sample_population_any_seed_gives_physiological_subjects(n, seed):
    pop = sample_population(n, seed=seed)
    assert pop.size == n
    assert np.all(pop.basal_u_per_h > 0)
    assert np.all(pop.carb_ratio_g_per_u > 0) and np.all(pop.correction_factor_mg_dl_per_u > 0)
    assert np.all((pop.params["Gb"] >= 70) & (pop.params["Gb"] <= 250))


def test_sample_population_rejects_bad_arguments():
    with pytest.raises(ValueError):
        sample_population(0, seed=1)
    with pytest.raises(CohortSelectionError):
        sample_population(3, seed=1, base=load_cohort("adults"), age_groups=["child"])


def test_model_based_insulin_needs_track_the_published_therapy():
    from hardware_sim.patient.cohort import model_carb_ratio_g_per_u, model_correction_factor_mg_dl_per_u

    cohort = load_cohort()
    cr = model_carb_ratio_g_per_u(cohort.params)
    cf = model_correction_factor_mg_dl_per_u(cohort.params)
    assert np.corrcoef(np.log(cr), np.log(cohort.carb_ratio_g_per_u))[0, 1] > 0.8
    assert np.corrcoef(np.log(cf), np.log(cohort.correction_factor_mg_dl_per_u))[0, 1] > 0.8


def test_zero_bandwidth_reproduces_base_subjects_and_their_therapy():
    base = load_cohort()
    pop = sample_population(9, seed=4, bandwidth=0.0)
    for k in range(pop.size):
        matches = [i for i in range(base.size)
                   if np.isclose(base.params["Vmx"][i], pop.params["Vmx"][k], rtol=1e-9)
                   and np.isclose(base.params["BW"][i], pop.params["BW"][k], rtol=1e-9)]
        assert len(matches) == 1
        i = matches[0]
        assert base.age_groups[i] == pop.age_groups[k]
        assert pop.carb_ratio_g_per_u[k] == pytest.approx(base.carb_ratio_g_per_u[i], rel=1e-6)
        assert pop.correction_factor_mg_dl_per_u[k] == pytest.approx(base.correction_factor_mg_dl_per_u[i], rel=1e-6)
        assert pop.total_daily_insulin_u[k] == pytest.approx(base.total_daily_insulin_u[i], rel=1e-6)
        assert pop.basal_u_per_h[k] == pytest.approx(base.basal_u_per_h[i], rel=1e-6)
