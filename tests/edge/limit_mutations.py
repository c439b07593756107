"""Hand check that the safety tests catch a mutation of any single limit (not collected by pytest).

Usage: ``.venv/bin/python tests/edge/limit_mutations.py``. It copies the committed tree to a temporary git
worktree, applies each mutation to ``edge/safety/rules.py`` there in turn, runs ``tests/edge/test_safety_rules.py``
and prints CAUGHT or SURVIVED. The working tree is never touched.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

MUTATIONS = {
    "max bolus doubled": ("capped = _cap_bolus(draft, limits.max_bolus_u)",
                          "capped = _cap_bolus(draft, 2 * limits.max_bolus_u)"),
    "max IOB doubled": ("room = 0.0 if iob is None else limits.max_iob_u - iob",
                        "room = 0.0 if iob is None else 2 * limits.max_iob_u - iob"),
    "max basal doubled": ("return max(min(limits.max_basal_u_per_h,", "return max(min(2 * limits.max_basal_u_per_h,"),
    "basal multiple doubled": ("limits.max_basal_multiple_of_scheduled * max(scheduled, 0.0)), 0.0)",
                               "2 * limits.max_basal_multiple_of_scheduled * max(scheduled, 0.0)), 0.0)"),
    "suspend threshold halved": ("    threshold = limits.suspend_threshold_mg_dl\n    reasons = []",
                                 "    threshold = limits.suspend_threshold_mg_dl / 2\n    reasons = []"),
    "stale limit doubled": ("elif context.glucose_age_min > limits.max_cgm_age_min:",
                            "elif context.glucose_age_min > 2 * limits.max_cgm_age_min:"),
    "stacking window halved": ("return _finite(since) and since < limits.stacking_window_min",
                               "return _finite(since) and since < limits.stacking_window_min / 2"),
    "rescue carbs cap doubled": ("if draft.rescue_carbs_g <= limits.max_rescue_carbs_g:",
                                 "if draft.rescue_carbs_g <= 2 * limits.max_rescue_carbs_g:"),
    "temp basal IOB room doubled": ("extra_allowed_u_per_h = max(room_u, 0.0) * 60.0",
                                    "extra_allowed_u_per_h = 2 * max(room_u, 0.0) * 60.0"),
}


def main() -> int:
    root = Path(__file__).resolve().parents[2]
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(root), "worktree", "add", "-q", "--detach", str(tree), "HEAD"], check=True)
        try:
            rules = tree / "edge" / "safety" / "rules.py"
            original = rules.read_text()
            survived = 0
            for name, (before, after) in MUTATIONS.items():
                if before not in original:
                    print(f"{name:30s} -> pattern not found (update this script)")
                    survived += 1
                    continue
                rules.write_text(original.replace(before, after, 1))
                run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                                      "tests/edge/test_safety_rules.py"], capture_output=True, text=True, cwd=tree)
                caught = run.returncode != 0
                survived += not caught
                print(f"{name:30s} -> {'CAUGHT' if caught else 'SURVIVED'}")
            rules.write_text(original)
        finally:
            subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", str(tree)], check=False)
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
