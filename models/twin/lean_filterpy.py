"""Import filterpy's Kalman filters without loading scipy.stats (about 40 MB resident on the hub).

``filterpy.kalman`` imports ``filterpy.stats`` at module level, and that imports ``scipy.stats``, only for the
filters' ``log_likelihood`` / ``likelihood`` properties; every module of ``filterpy.kalman`` takes just
``logpdf`` from it. The twin never reads those properties, yet on a 1 GB hub scipy.stats was the largest single
import (measured: ``python -m edge.bench_hub``, the RSS rows). Until ``filterpy.stats`` is really needed, a
stand-in module answers: its ``logpdf`` and any other attribute import the real ``filterpy.stats`` on first
use and hand over to it, so nothing changes for code that does use them (tests/models/test_lean_filterpy.py).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

_NAME = "filterpy.stats"


class _DeferredFilterpyStats(types.ModuleType):
    """Stands in for ``filterpy.stats`` until an attribute of it is used."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # the import system probes __path__, __spec__...: not a use of the module
            raise AttributeError(name)
        return getattr(_load_real(), name)


def _load_real() -> types.ModuleType:
    if isinstance(sys.modules.get(_NAME), _DeferredFilterpyStats):
        del sys.modules[_NAME]
    real = importlib.import_module(_NAME)  # also sets filterpy.stats on the package
    return real


def _logpdf(*args: Any, **kwargs: Any) -> Any:
    return _load_real().logpdf(*args, **kwargs)


def defer_filterpy_stats() -> None:
    """Install the stand-in (no-op when ``filterpy.stats`` is already imported)."""
    if _NAME in sys.modules:
        return
    stand_in = _DeferredFilterpyStats(_NAME, "filterpy.stats, loaded on first use (models.twin.lean_filterpy)")
    stand_in.logpdf = _logpdf  # type: ignore[attr-defined]
    sys.modules[_NAME] = stand_in  # before filterpy's own __init__, which imports every subpackage
    package = importlib.import_module("filterpy")
    package.stats = stand_in  # type: ignore[attr-defined]


defer_filterpy_stats()

from filterpy.kalman import (  # noqa: E402 - after the stand-in, on purpose
    ExtendedKalmanFilter,
    MerweScaledSigmaPoints,
    UnscentedKalmanFilter,
)

__all__ = ["ExtendedKalmanFilter", "MerweScaledSigmaPoints", "UnscentedKalmanFilter", "defer_filterpy_stats"]
