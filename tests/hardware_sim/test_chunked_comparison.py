"""The long comparison's chunk runner resumes: finished chunks are skipped, the rest run seed by seed."""

from __future__ import annotations

from pathlib import Path

import pytest

from hardware_sim.trial.peers import chunked


def test_chunks_already_there_are_skipped_and_the_rest_run_seed_major(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[tuple[str, str, int]] = []

    def fake_run(out: Path, arm: str, group: str, seed: int, days: float, scenario: str) -> float:
        ran.append((arm, group, seed))
        chunked.chunk_path(out, arm, group, seed, days, scenario).write_text("{}")
        return 0.0

    monkeypatch.setattr(chunked, "run_chunk", fake_run)
    chunked.chunk_path(tmp_path, "loop", "adults", 1, 14.0, "challenging").write_text("{}")  # finished earlier
    args = ["--out", str(tmp_path), "--arms", "oref0,loop", "--seeds", "1,2", "--days", "14"]
    assert chunked.main(args) == 0
    assert ran[:3] == [("oref0", "adults", 1), ("oref0", "adolescents", 1), ("loop", "adolescents", 1)]
    assert ("loop", "adults", 1) not in ran and len(ran) == 2 * 3 * 2 - 1
    assert all(seed == 1 for _, _, seed in ran[:5]) and all(seed == 2 for _, _, seed in ran[5:])
    ran.clear()
    assert chunked.main(args) == 0 and ran == []  # everything is there: a rerun does nothing


def test_groups_narrow_the_plan_and_an_unknown_group_is_refused(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[tuple[str, str, int]] = []
    monkeypatch.setattr(chunked, "run_chunk", lambda out, arm, group, seed, days, scenario: ran.append(
        (arm, group, seed)) or 0.0)
    assert chunked.main(["--out", str(tmp_path), "--arms", "loop", "--seeds", "1", "--groups", "children"]) == 0
    assert ran == [("loop", "children", 1)]
    with pytest.raises(SystemExit):
        chunked.main(["--out", str(tmp_path), "--groups", "adults,toddlers"])
