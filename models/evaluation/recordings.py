"""Loaders for recorded CGM (and optionally insulin and carb) data, into one ``Recording``.

Formats:

* CSV with a header row. Columns (order free, extra columns ignored):
    ``timestamp``             ISO-8601 (``2026-11-23T07:05:00Z``, offsets allowed; no zone = UTC) or epoch
                              milliseconds (an integer or decimal number)
    ``glucose_mg_dl``         CGM reading; empty on rows that carry only treatments
    ``bolus_units``           optional, insulin given at that time (U)
    ``basal_units_per_hour``  optional, basal rate from that time on (U/h)
    ``carbs_g``               optional, carbs eaten or announced at that time (g)
  A CGM-only file has just ``timestamp,glucose_mg_dl``.
* Nightscout exports: ``entries.json`` (a list of ``{"type": "sgv", "sgv": 123, "date": <epoch ms>}``;
  ``dateString`` is used if ``date`` is missing) and optionally ``treatments.json`` (``insulin`` -> bolus,
  ``carbs`` -> carbs, ``eventType: "Temp Basal"`` with ``absolute``/``rate`` and ``duration`` min -> a basal
  rate for that duration, then back to the scheduled rate, written as NaN). A JSON object
  ``{"entries": [...], "treatments": [...]}`` in one file works too.

Times become minutes since the first event (``Recording.start_epoch_s`` keeps the origin). Bad input raises
``RecordingError`` naming the file and the row.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

GLUCOSE_RANGE_MG_DL = (10.0, 1000.0)


class RecordingError(ValueError):
    """A recording cannot be read: missing columns, unparsable values, or nothing usable in it."""


@dataclass
class Recording:
    """A person's recorded data on one time axis (minutes since ``start_epoch_s``), each series sorted."""

    name: str
    start_epoch_s: float
    glucose_minutes: NDArray[np.float64]
    glucose_mg_dl: NDArray[np.float64]
    bolus_minutes: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    bolus_u: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    basal_minutes: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    basal_u_per_h: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))  # NaN: back to scheduled
    carb_minutes: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    carbs_g: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))

    @property
    def has_treatments(self) -> bool:
        return bool(self.bolus_u.size or self.basal_u_per_h.size or self.carbs_g.size)

    @property
    def duration_min(self) -> float:
        return float(self.glucose_minutes[-1] - self.glucose_minutes[0]) if self.glucose_minutes.size else 0.0


def parse_timestamp_s(text: str) -> float:
    """Epoch seconds from ISO-8601 text (no zone = UTC) or from epoch milliseconds."""
    value = text.strip()
    if not value:
        raise ValueError("empty timestamp")
    try:
        ms = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(ms):
            raise ValueError(f"timestamp {text!r} is not finite")
        return ms / 1000.0
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _number(text: str | None, what: str) -> float | None:
    if text is None or not str(text).strip():
        return None
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{what} {text!r} is not finite")
    return value


def _build(name: str, events: Iterable[tuple[float, str, float]]) -> Recording:
    """From (epoch seconds, kind, value) events; kind is glucose, bolus, basal or carbs."""
    rows = sorted(events, key=lambda e: e[0])
    glucose = [(t, v) for t, k, v in rows if k == "glucose"]
    if not glucose:
        raise RecordingError(f"{name}: no glucose readings")
    start = rows[0][0]

    def series(kind: str) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        chosen = [((t - start) / 60.0, v) for t, k, v in rows if k == kind]
        if not chosen:
            return np.zeros(0), np.zeros(0)
        minutes, values = zip(*chosen)
        return np.array(minutes, dtype=float), np.array(values, dtype=float)

    g_min, g_val = series("glucose")
    b_min, b_val = series("bolus")
    r_min, r_val = series("basal")
    c_min, c_val = series("carbs")
    return Recording(name, float(start), g_min, g_val, b_min, b_val, r_min, r_val, c_min, c_val)


def load_csv(path: str | Path) -> Recording:
    """A documented CSV recording (see the module docstring)."""
    path = Path(path)
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as error:
        raise RecordingError(f"{path}: cannot open: {error}") from error
    events: list[tuple[float, str, float]] = []
    with handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or [])
        missing = {"timestamp", "glucose_mg_dl"} - columns
        if missing:
            raise RecordingError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        for line, row in enumerate(reader, start=2):
            try:
                t = parse_timestamp_s(row["timestamp"] or "")
                glucose = _number(row.get("glucose_mg_dl"), "glucose_mg_dl")
                bolus = _number(row.get("bolus_units"), "bolus_units")
                basal = _number(row.get("basal_units_per_hour"), "basal_units_per_hour")
                carbs = _number(row.get("carbs_g"), "carbs_g")
            except (ValueError, TypeError) as error:
                raise RecordingError(f"{path}, line {line}: {error}") from error
            if glucose is not None:
                if not GLUCOSE_RANGE_MG_DL[0] <= glucose <= GLUCOSE_RANGE_MG_DL[1]:
                    raise RecordingError(f"{path}, line {line}: glucose_mg_dl={glucose:g} outside 10-1000")
                events.append((t, "glucose", glucose))
            for kind, value in (("bolus", bolus), ("basal", basal), ("carbs", carbs)):
                if value is None:
                    continue
                if value < 0:
                    raise RecordingError(f"{path}, line {line}: negative {kind} {value:g}")
                if kind == "basal" or value > 0:
                    events.append((t, kind, value))
    return _build(path.stem, events)


def _json_time_s(item: dict[str, Any]) -> float:
    for key in ("date", "mills"):
        if isinstance(item.get(key), int | float):
            return float(item[key]) / 1000.0
    for key in ("dateString", "created_at", "timestamp"):
        if isinstance(item.get(key), str):
            return parse_timestamp_s(item[key])
    raise ValueError("no date, mills, dateString or created_at")


def _entries_events(entries: list[Any], where: str) -> list[tuple[float, str, float]]:
    events = []
    for i, item in enumerate(entries):
        if not isinstance(item, dict):
            raise RecordingError(f"{where}: entry {i} is not an object")
        if item.get("type", "sgv") != "sgv" or item.get("sgv") is None:
            continue
        try:
            value = float(item["sgv"])
            t = _json_time_s(item)
        except (ValueError, TypeError) as error:
            raise RecordingError(f"{where}: entry {i}: {error}") from error
        if GLUCOSE_RANGE_MG_DL[0] <= value <= GLUCOSE_RANGE_MG_DL[1]:
            events.append((t, "glucose", value))
    return events


def _treatment_events(treatments: list[Any], where: str) -> list[tuple[float, str, float]]:
    events = []
    for i, item in enumerate(treatments):
        if not isinstance(item, dict):
            raise RecordingError(f"{where}: treatment {i} is not an object")
        try:
            t = _json_time_s(item)
            insulin = _number(item.get("insulin"), "insulin")
            carbs = _number(item.get("carbs"), "carbs")
            if insulin and insulin > 0:
                events.append((t, "bolus", insulin))
            if carbs and carbs > 0:
                events.append((t, "carbs", carbs))
            if item.get("eventType") == "Temp Basal":
                rate = _number(item.get("absolute", item.get("rate")), "rate")
                duration = _number(item.get("duration"), "duration") or 0.0
                if rate is not None and rate >= 0:
                    events.append((t, "basal", rate))
                    if duration > 0:
                        events.append((t + duration * 60.0, "basal", math.nan))
        except (ValueError, TypeError) as error:
            raise RecordingError(f"{where}: treatment {i}: {error}") from error
    return events


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise RecordingError(f"{path}: cannot read JSON: {error}") from error


def load_nightscout(entries_path: str | Path, treatments_path: str | Path | None = None) -> Recording:
    """Nightscout ``entries.json`` (and optionally ``treatments.json``) exports."""
    entries_path = Path(entries_path)
    data = _read_json(entries_path)
    treatments: list[Any] = []
    if isinstance(data, dict):
        treatments = data.get("treatments", [])
        data = data.get("entries", [])
    if not isinstance(data, list) or not isinstance(treatments, list):
        raise RecordingError(f"{entries_path}: expected a list of entries")
    events = _entries_events(data, str(entries_path))
    if treatments_path is not None:
        more = _read_json(Path(treatments_path))
        if not isinstance(more, list):
            raise RecordingError(f"{treatments_path}: expected a list of treatments")
        treatments = treatments + more
    events += _treatment_events(treatments, str(treatments_path or entries_path))
    return _build(entries_path.stem, events)


def load_recording(path: str | Path) -> Recording:
    """By extension: ``.csv``; ``.json`` (Nightscout); a directory with ``entries.json`` [+ ``treatments.json``]."""
    path = Path(path)
    if path.is_dir():
        treatments = path / "treatments.json"
        return load_nightscout(path / "entries.json", treatments if treatments.exists() else None)
    if not path.exists():
        raise RecordingError(f"{path}: no such file")
    if path.suffix.lower() == ".csv":
        return load_csv(path)
    if path.suffix.lower() == ".json":
        return load_nightscout(path)
    raise RecordingError(f"{path}: unknown recording format (use .csv, .json or a Nightscout export folder)")
