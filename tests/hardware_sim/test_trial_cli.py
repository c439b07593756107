"""`glucotwin trial`: JSON and CSV output, printed table, errors (run in-process through the real entry point)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from edge.cli import main


def test_trial_writes_json_csv_and_prints_group_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_json, out_csv = tmp_path / "trial.json", tmp_path / "trial.csv"
    code = main(["trial", "--cohort", "adult#001,child#001", "--days", "0.25", "--seeds", "1,2", "--arms",
                 "basal-bolus,basal-bolus-lgs", "--json", str(out_json), "--csv", str(out_csv), "--no-progress",
                 "--per-subject"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "TIR70-180%" in printed and "child#001@2" in printed and "wall time" in printed
    document = json.loads(out_json.read_text())
    assert document["config"]["seeds"] == [1, 2] and document["config"]["scenario"] == "standard"
    assert set(document["arms"]) == {"basal-bolus", "basal-bolus-lgs"}
    arm = document["arms"]["basal-bolus"]
    assert set(arm["groups"]) == {"adult", "child", "all"}
    assert arm["groups"]["all"]["n_rows"] == 4
    assert len(arm["rows"]) == 4
    for row in arm["rows"]:
        parts = [row[k] for k in ("time_below_54_pct", "time_54_69_pct", "time_in_range_70_180_pct",
                                  "time_181_250_pct", "time_above_250_pct")]
        assert sum(parts) == pytest.approx(100.0)
        assert row["insulin_u_per_day"] > 0
        assert 0 <= row["sensor_sensor_active_pct"] <= 100
    with out_csv.open() as handle:
        lines = list(csv.DictReader(handle))
    assert len(lines) == 8
    assert {line["subject"] for line in lines} == {"adult#001", "child#001"}
    tir = {(l["arm"], l["subject"], l["seed"]): float(l["time_in_range_70_180_pct"]) for l in lines}
    first = arm["rows"][0]
    assert tir[("basal-bolus", first["subject"], str(first["seed"]))] == pytest.approx(first["time_in_range_70_180_pct"])


@pytest.mark.parametrize(
    "argv",
    [
        ["trial", "--arms", "no-such-arm", "--days", "0.1", "--no-progress"],
        ["trial", "--cohort", "martian#001", "--days", "0.1", "--no-progress"],
    ],
)
def test_bad_arguments_give_a_clear_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "glucotwin trial: error:" in capsys.readouterr().err


def test_bad_seeds_are_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["trial", "--seeds", "one,two"])
    assert "comma-separated integers" in capsys.readouterr().err


def test_population_option_samples_new_subjects(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_json = tmp_path / "population.json"
    code = main(["trial", "--population", "3", "--population-seed", "5", "--days", "0.1", "--no-progress",
                 "--json", str(out_json)])
    assert code == 0
    document = json.loads(out_json.read_text())
    assert document["cohort"] == "population n=3 seed=5"
    rows = document["arms"]["basal-bolus"]["rows"]
    assert len(rows) == 3 and all("#v5-" in row["subject"] for row in rows)
    assert {row["age_group"] for row in rows} == {"adult", "adolescent", "child"}
