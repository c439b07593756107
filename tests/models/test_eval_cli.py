"""`glucotwin eval forecast` end to end through the real console entry (edge.cli.main)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge.cli import main

from .synthetic_glucose_traces import make_trace


def _write_csv(path: Path, hours: float = 5.0) -> None:
    tr = make_trace(hours=hours, seed=7, meals=((60, 40), (200, 50)))
    lines = ["timestamp,glucose_mg_dl,bolus_units,basal_units_per_hour,carbs_g"]
    t0 = 1_790_000_000_000
    for k, minute in enumerate(tr.minutes):
        stamp = t0 + int(minute * 60_000)
        basal = "0.9" if k == 0 else ""
        bolus = f"{tr.bolus_u[k]:g}" if tr.bolus_u[k] else ""
        carbs = f"{tr.carbs_g[k]:g}" if tr.carbs_g[k] else ""
        lines.append(f"{stamp},{tr.cgm_mg_dl[k]:.1f},{bolus},{basal},{carbs}")
    path.write_text("\n".join(lines) + "\n")


def test_eval_forecast_prints_one_table_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rec, out = tmp_path / "day.csv", tmp_path / "report.json"
    _write_csv(rec)
    code = main(["eval", "forecast", "--recording", str(rec), "--json", str(out), "--every", "2"])
    assert code == 0
    text = capsys.readouterr().out
    for name in ("last_value", "linear", "loop", "twin"):
        assert sum(line.split()[0].rstrip("*") == name for line in text.splitlines()[3:-1]) == 2  # 30 and 60 min
    assert "Clarke A/B/C/D/E %" in text and "cov95%" in text
    data = json.loads(out.read_text())
    assert data["hub_method"] == "twin"
    assert data["settings"]["basal_u_per_h"] == 0.9
    h30 = data["methods"]["loop"]["horizons"]["30"]
    assert h30["n_pairs"] > 10 and set(h30["parkes_percent"]) == set("ABCDE")
    assert set(data["methods"]["twin"]["horizons"]) == {"30", "60", "90", "120"}
    assert np.isfinite(h30["rmse_mg_dl"])


def test_eval_forecast_selected_methods(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rec = tmp_path / "day.csv"
    _write_csv(rec, hours=3.0)
    assert main(["eval", "forecast", "--recording", str(rec), "--methods", "last_value,linear"]) == 0
    text = capsys.readouterr().out
    assert "loop" not in text and "linear" in text


@pytest.mark.parametrize("argv, message", [
    (["--methods", "nope"], "unknown forecasting method"),
    (["--plugin", "no_such_module_h7"], "cannot import plugin"),
    (["--isf", "-3"], "isf"),
])
def test_eval_forecast_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                                        message: str) -> None:
    rec = tmp_path / "day.csv"
    _write_csv(rec, hours=2.0)
    assert main(["eval", "forecast", "--recording", str(rec), *argv]) == 2
    assert message in capsys.readouterr().err


def test_missing_recording_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "forecast", "--recording", str(tmp_path / "none.csv")]) == 2
    assert "no such file" in capsys.readouterr().err
