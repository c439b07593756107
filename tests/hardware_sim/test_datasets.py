"""Virtual-patient data sets: reproducible by seed, split by whole subjects, recordings the harness reads."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from hardware_sim.datasets import TEST_SUBJECTS, DatasetPlan, DatasetPlanError, generate, main, split_cohorts
from models.evaluation.recordings import load_csv

TINY = DatasetPlan(
    days=0.2, scenarios=("realistic",), train_seeds=(1,), train_subjects=("adult#001", "child#002"),
    train_population=1, train_population_run_seeds=(5,), val_population=1, val_seeds=(7,), test_seeds=(9,),
    test_subjects=("adult#009",), recordings_for=("val", "test"),
)


def _digest_tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("tiny")
    return out, generate(TINY, out)


def test_same_plan_same_bytes(tiny, tmp_path: Path) -> None:
    out, manifest = tiny
    again = generate(TINY, tmp_path)
    assert again["npz_sha256"] == manifest["npz_sha256"]
    assert _digest_tree(out) == _digest_tree(tmp_path)


def test_other_seed_other_data(tiny, tmp_path: Path) -> None:
    out, _ = tiny
    other = DatasetPlan(**{**TINY.__dict__, "test_seeds": (10,)})
    generate(other, tmp_path)
    a, b = np.load(out / "dataset.npz"), np.load(tmp_path / "dataset.npz")
    test_a, test_b = a["split"] == "test", b["split"] == "test"
    assert not np.array_equal(a["cgm_mg_dl"][test_a], b["cgm_mg_dl"][test_b], equal_nan=True)
    train_a, train_b = a["split"] == "train", b["split"] == "train"
    np.testing.assert_array_equal(a["cgm_mg_dl"][train_a], b["cgm_mg_dl"][train_b])


def test_splits_are_by_whole_subjects(tiny) -> None:
    out, manifest = tiny
    data = np.load(out / "dataset.npz")
    subjects = {s: set(data["subject"][data["split"] == s]) for s in ("train", "val", "test")}
    assert subjects["test"] == {"adult#009"}
    assert not (subjects["train"] & subjects["test"]) and not (subjects["val"] & subjects["test"])
    assert not (subjects["train"] & subjects["val"])
    assert manifest["subjects"]["test"] == ["adult#009"]


def test_default_plan_holds_out_the_published_test_subjects() -> None:
    parts = split_cohorts(DatasetPlan(train_population=3, val_population=3))
    train_names = {n for cohort, _ in parts["train"] for n in cohort.names}
    test_names = {n for cohort, _ in parts["test"] for n in cohort.names}
    assert test_names == set(TEST_SUBJECTS)
    assert len({n for n in train_names if "#v" not in n}) == 24 and not (train_names & test_names)


def test_recordings_round_trip_through_the_harness_loader(tiny) -> None:
    out, _ = tiny
    data = np.load(out / "dataset.npz")
    for split in ("val", "test"):
        rows = np.flatnonzero(data["split"] == split)
        for r in rows:
            path = out / "recordings" / split / f"{data['label'][r]}.csv"
            rec = load_csv(path)
            cgm = data["cgm_mg_dl"][r]
            ok = np.isfinite(cgm)
            np.testing.assert_allclose(rec.glucose_mg_dl, cgm[ok])
            np.testing.assert_allclose(rec.glucose_minutes, data["minutes"][ok] - 0.0)
            assert rec.bolus_u.sum() == pytest.approx(float(data["bolus_u"][r].sum()), abs=1e-3 * max(1, ok.sum()))
            assert rec.carbs_g.sum() == pytest.approx(float(data["carbs_announced_g"][r].sum()))
            assert rec.basal_u_per_h.tolist() == [pytest.approx(float(data["basal_u_per_h"][r]))]
            settings = json.loads(path.with_suffix(".settings.json").read_text())
            assert settings["subject"] == data["subject"][r]


def test_plan_rejects_overlapping_seeds_and_test_subjects_in_training() -> None:
    with pytest.raises(DatasetPlanError):
        DatasetPlan(train_seeds=(1,), test_seeds=(1,))
    with pytest.raises(DatasetPlanError):
        DatasetPlan(train_subjects=("adult#009",))
    with pytest.raises(DatasetPlanError):
        DatasetPlan(days=0)


def test_cli_reports_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--out", str(tmp_path), "--scenarios", "no-such-scenario", "--population", "0",
                 "--val-population", "0", "--days", "0.05"]) == 2
    assert "error" in capsys.readouterr().err
