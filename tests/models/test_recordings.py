"""Recording loaders: documented CSV (ISO or epoch-ms time), Nightscout JSON, CGM-only, and bad files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from models.evaluation.recordings import RecordingError, load_csv, load_nightscout, load_recording, parse_timestamp_s


def test_csv_with_treatments_and_iso_times(tmp_path: Path) -> None:
    path = tmp_path / "day.csv"
    path.write_text(
        "timestamp,glucose_mg_dl,bolus_units,basal_units_per_hour,carbs_g,note\n"
        "2026-11-23T07:05:00Z,120,,,,\n"
        "2026-11-23T07:00:00Z,118,,0.9,,start\n"
        "2026-11-23T07:10:00+00:00,,4.5,,45,breakfast\n"
        "2026-11-23T07:10:00Z,125,,,,\n"
    )
    rec = load_csv(path)
    assert rec.name == "day"
    assert rec.glucose_minutes.tolist() == [0.0, 5.0, 10.0]
    assert rec.glucose_mg_dl.tolist() == [118.0, 120.0, 125.0]
    assert rec.bolus_minutes.tolist() == [10.0] and rec.bolus_u.tolist() == [4.5]
    assert rec.basal_u_per_h.tolist() == [0.9] and rec.carbs_g.tolist() == [45.0]
    assert rec.start_epoch_s == parse_timestamp_s("2026-11-23T07:00:00Z")
    assert rec.has_treatments and rec.duration_min == 10.0


def test_cgm_only_csv_with_epoch_ms(tmp_path: Path) -> None:
    path = tmp_path / "cgm.csv"
    t0 = 1_790_000_000_000
    lines = ["timestamp,glucose_mg_dl"] + [f"{t0 + k * 300_000},{100 + k}" for k in range(5)]
    path.write_text("\n".join(lines) + "\n")
    rec = load_recording(path)
    assert not rec.has_treatments
    assert np.allclose(rec.glucose_minutes, [0, 5, 10, 15, 20])
    assert rec.start_epoch_s == t0 / 1000


@pytest.mark.parametrize("content, message", [
    ("time,glucose\n1,2\n", "missing column"),
    ("timestamp,glucose_mg_dl\nyesterday,120\n", "line 2"),
    ("timestamp,glucose_mg_dl\n2026-11-23T07:00:00Z,abc\n", "line 2"),
    ("timestamp,glucose_mg_dl\n2026-11-23T07:00:00Z,5000\n", "outside"),
    ("timestamp,glucose_mg_dl,bolus_units\n2026-11-23T07:00:00Z,120,-1\n", "negative"),
    ("timestamp,glucose_mg_dl\n", "no glucose"),
])
def test_bad_csv_is_refused_with_the_place(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(RecordingError, match=message):
        load_csv(path)


def _nightscout(tmp_path: Path) -> tuple[Path, Path]:
    t0 = 1_790_000_000_000
    entries = [{"type": "sgv", "sgv": 150 - k, "date": t0 + k * 300_000} for k in range(6)]
    entries.append({"type": "mbg", "mbg": 140, "date": t0})
    entries.append({"type": "sgv", "sgv": 110, "dateString": "2026-09-21T12:00:00Z"})
    treatments = [
        {"eventType": "Meal Bolus", "insulin": 3.0, "carbs": 30, "created_at": "2026-09-21T13:00:00Z"},
        {"eventType": "Temp Basal", "absolute": 0.0, "duration": 30, "mills": t0 + 600_000},
    ]
    e, t = tmp_path / "entries.json", tmp_path / "treatments.json"
    e.write_text(json.dumps(entries))
    t.write_text(json.dumps(treatments))
    return e, t


def test_nightscout_entries_and_treatments(tmp_path: Path) -> None:
    e, t = _nightscout(tmp_path)
    rec = load_nightscout(e, t)
    assert rec.glucose_mg_dl.size == 7
    assert np.all(np.diff(rec.glucose_minutes) >= 0)
    assert rec.bolus_u.tolist() == [3.0] and rec.carbs_g.tolist() == [30.0]
    assert rec.basal_u_per_h[0] == 0.0 and math.isnan(rec.basal_u_per_h[1])
    assert rec.basal_minutes[1] - rec.basal_minutes[0] == pytest.approx(30.0)
    folder = load_recording(tmp_path)
    assert folder.glucose_mg_dl.tolist() == rec.glucose_mg_dl.tolist()
    combined = tmp_path / "both.json"
    combined.write_text(json.dumps({"entries": json.loads(e.read_text()), "treatments": json.loads(t.read_text())}))
    assert load_recording(combined).bolus_u.tolist() == [3.0]


def test_unreadable_or_unknown_files(tmp_path: Path) -> None:
    with pytest.raises(RecordingError):
        load_recording(tmp_path / "nope.csv")
    odd = tmp_path / "x.txt"
    odd.write_text("hi")
    with pytest.raises(RecordingError, match="unknown"):
        load_recording(odd)
    broken = tmp_path / "entries.json"
    broken.write_text("{not json")
    with pytest.raises(RecordingError):
        load_nightscout(broken)
    broken.write_text(json.dumps([{"sgv": 100}]))
    with pytest.raises(RecordingError, match="entry 0"):
        load_nightscout(broken)
