"""The comparison's goal check on hand-made trial results (no simulation needed)."""

from __future__ import annotations

import json
import math

import pytest

from hardware_sim.trial.peers.compare import ComparisonError, check_goal, format_report, load_rows, main


def row(arm: str, subject: str, group: str, tir: float, below_54: float, seed: int = 1) -> dict:
    return {"arm": arm, "subject": subject, "age_group": group, "seed": seed, "replicate": 0,
            "time_in_range_70_180_pct": tir, "time_below_70_pct": below_54 * 2, "time_below_54_pct": below_54,
            "time_above_250_pct": 1.0, "cv_pct": 30.0, "lbgi": 1.0, "hbgi": 2.0, "insulin_u_per_day": 40.0,
            "rescue_carbs_g_per_day": 0.0}


def write(tmp_path, name: str, arms: dict[str, list[dict]]) -> str:
    path = tmp_path / name
    path.write_text(json.dumps({"config": {"days": 1, "seeds": [1], "scenario": "challenging"},
                                "arms": {a: {"rows": rows} for a, rows in arms.items()}}))
    return str(path)


def cohort(arm: str, tirs: dict[str, float], below: dict[str, float]) -> list[dict]:
    return [row(arm, f"{g}#00{i}", g, tirs[g], below[g]) for g in ("adult", "child") for i in (1, 2)]


def test_goal_met_only_when_every_check_holds_in_every_group(tmp_path):
    peers = {"oref0": cohort("oref0", {"adult": 85.0, "child": 70.0}, {"adult": 0.5, "child": 2.0}),
             "loop": cohort("loop", {"adult": 88.0, "child": 65.0}, {"adult": 0.2, "child": 1.0})}
    good = cohort("glucotwin", {"adult": 92.0, "child": 80.0}, {"adult": 0.2, "child": 0.5})
    verdicts = check_goal({**peers, "glucotwin": good})
    assert [v.group for v in verdicts] == ["adult", "child"]
    assert all(v.met for v in verdicts)
    assert verdicts[0].best_peer_tor == ("loop", pytest.approx(12.0))  # best peer = lowest time out of range
    # TOR 8.1 > 2/3 of 12 = 8.0 for adults: missed by a hair
    close = cohort("glucotwin", {"adult": 91.9, "child": 80.0}, {"adult": 0.2, "child": 0.5})
    adult = check_goal({**peers, "glucotwin": close})[0]
    assert not adult.checks["TOR <= 2/3 of best peer"] and adult.checks["<54 <= best peer"]
    # one child row at 1% below 54 breaks the per-row rule even if the mean is fine
    rows = cohort("glucotwin", {"adult": 92.0, "child": 80.0}, {"adult": 0.2, "child": 0.5})
    rows[-1]["time_below_54_pct"] = 1.0
    child = check_goal({**peers, "glucotwin": rows})[1]
    assert not child.checks["every row <54 < 1%"]


def test_files_split_by_arm_are_pooled_and_rows_must_match(tmp_path, capsys):
    a = write(tmp_path, "peers.json", {"oref0": cohort("oref0", {"adult": 85.0, "child": 70.0},
                                                       {"adult": 0.5, "child": 2.0})})
    b = write(tmp_path, "gt.json", {"glucotwin": cohort("glucotwin", {"adult": 95.0, "child": 85.0},
                                                        {"adult": 0.0, "child": 0.0})})
    arms, configs = load_rows([a, b])
    assert set(arms) == {"oref0", "glucotwin"} and len(configs) == 2
    report = format_report(arms, configs)
    assert "goal MET in every age group" in report
    assert main([a, b]) == 0
    fewer = write(tmp_path, "fewer.json", {"glucotwin": cohort("glucotwin", {"adult": 95.0, "child": 85.0},
                                                               {"adult": 0.0, "child": 0.0})[:-1]})
    with pytest.raises(ComparisonError, match="not comparable"):
        check_goal(load_rows([a, fewer])[0])
    assert main([a, fewer]) == 0  # the table still prints; the check says why it cannot be made
    assert "goal check not possible" in capsys.readouterr().out
    (tmp_path / "bad.json").write_text("{}")
    assert main([str(tmp_path / "bad.json")]) == 2


def test_the_glycemia_risk_index_is_taken_from_rows_or_computed_from_their_ranges() -> None:
    from hardware_sim.trial.peers.compare import group_means
    ranges = {"time_below_54_pct": 1.0, "time_54_69_pct": 2.0, "time_181_250_pct": 10.0, "time_above_250_pct": 5.0}
    older = {**row("oref0", "adult#001", "adult", 82.0, 1.0), **ranges}  # written before GRI was reported
    newer = {**row("oref0", "adult#002", "adult", 82.0, 1.0), **ranges, "gri": 30.0}
    means = group_means([older, newer])["adult"]
    # older: 3.0 x 1 + 2.4 x 2 + 1.6 x 5 + 0.8 x 10 = 23.8; newer: 30 as written
    assert means["gri"] == pytest.approx((23.8 + 30.0) / 2)
    assert math.isnan(group_means([row("oref0", "adult#001", "adult", 82.0, 1.0)])["adult"]["gri"])  # no ranges
