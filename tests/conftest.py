"""Shared pytest configuration.

Tests marked ``slow`` (long in-silico trials, fuzzing campaigns, soak tests) are deselected unless they are
asked for with ``-m slow`` (or any ``-m`` expression that mentions them).
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "slow" in (config.getoption("markexpr") or ""):
        return
    deselected = [item for item in items if item.get_closest_marker("slow")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]
