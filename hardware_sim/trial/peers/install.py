"""Install the peer algorithms on demand into ``.peers/`` (git-ignored), outside the project's virtualenv.

* OpenAPS oref0 0.7.1: ``npm install --ignore-scripts oref0@0.7.1`` into ``.peers/oref0`` (needs node >= 18).
* Loop through ``opsb-pyloopkit``: its own virtualenv ``.peers/loop-venv`` because it needs ``numpy<2`` and the
  project runs numpy 2.

Both steps are idempotent (nothing is done when the package is already there). Run
``python -m hardware_sim.trial.peers.install [oref0|loop|all] [--check]``. Without registry access the
commands fail and :class:`PeerInstallError` says so plainly.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

OREF0_VERSION = "0.7.1"
PYLOOPKIT_REQUIREMENT = "opsb-pyloopkit"
LOOP_NUMPY_REQUIREMENT = "numpy<2"


class PeerInstallError(RuntimeError):
    """A peer could not be installed or found (offline, no node, no python venv...)."""


def project_root() -> Path:
    return Path(__file__).resolve().parents[3]


def peers_dir() -> Path:
    """Where peers live: ``$GLUCOTWIN_PEERS_DIR`` or ``<project>/.peers``."""
    return Path(os.environ.get("GLUCOTWIN_PEERS_DIR") or project_root() / ".peers")


def oref0_package_dir() -> Path:
    return peers_dir() / "oref0" / "node_modules" / "oref0"


def loop_python() -> Path:
    return peers_dir() / "loop-venv" / "bin" / "python"


def node_executable() -> str | None:
    return shutil.which("node")


def oref0_available() -> tuple[bool, str]:
    """(usable, why not) for the oref0 arm."""
    if node_executable() is None:
        return False, "node is not installed"
    package = oref0_package_dir() / "package.json"
    if not package.exists():
        return False, f"oref0 is not installed in {oref0_package_dir()} (python -m hardware_sim.trial.peers.install oref0)"
    version = json.loads(package.read_text()).get("version")
    if version != OREF0_VERSION:
        return False, f"oref0 {version} found, {OREF0_VERSION} expected"
    return True, ""


def loop_available() -> tuple[bool, str]:
    """(usable, why not) for the Loop arm."""
    python = loop_python()
    if not python.exists():
        return False, f"no Loop virtualenv at {python.parent.parent} (python -m hardware_sim.trial.peers.install loop)"
    probe = subprocess.run([str(python), "-c", "import pyloopkit.loop_data_manager"], capture_output=True, text=True)
    if probe.returncode != 0:
        return False, f"pyloopkit does not import in {python}: {probe.stderr.strip()[-300:]}"
    return True, ""


def _run(command: list[str], cwd: Path, what: str) -> None:
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=1200)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise PeerInstallError(f"{what}: {error}") from error
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip()[-800:]
        offline = any(s in tail for s in ("ENOTFOUND", "EAI_AGAIN", "Could not find a version", "No matching distribution",
                                          "Temporary failure in name resolution", "ECONNREFUSED", "network"))
        hint = " (no registry access? the peers need the npm / PyPI registries once)" if offline else ""
        raise PeerInstallError(f"{what} failed{hint}: {tail}")


def install_oref0() -> Path:
    """``npm install --ignore-scripts oref0@0.7.1`` into ``.peers/oref0`` unless it is already there."""
    ok, _ = oref0_available()
    if ok:
        return oref0_package_dir()
    npm = shutil.which("npm")
    if npm is None or node_executable() is None:
        raise PeerInstallError("node and npm are needed for the oref0 arm (apt-get install nodejs npm)")
    target = peers_dir() / "oref0"
    target.mkdir(parents=True, exist_ok=True)
    _run([npm, "install", "--ignore-scripts", "--no-audit", "--no-fund", f"oref0@{OREF0_VERSION}"], target,
         "npm install oref0")
    ok, why = oref0_available()
    if not ok:
        raise PeerInstallError(why)
    return oref0_package_dir()


def install_loop() -> Path:
    """A virtualenv ``.peers/loop-venv`` with ``opsb-pyloopkit`` and ``numpy<2`` unless it is already there."""
    ok, _ = loop_available()
    if ok:
        return loop_python()
    venv = peers_dir() / "loop-venv"
    venv.parent.mkdir(parents=True, exist_ok=True)
    base = shutil.which("python3") or sys.executable
    if not loop_python().exists():
        _run([base, "-m", "venv", str(venv)], venv.parent, "creating the Loop virtualenv")
    _run([str(loop_python()), "-m", "pip", "install", "-q", PYLOOPKIT_REQUIREMENT, LOOP_NUMPY_REQUIREMENT], venv.parent,
         "pip install opsb-pyloopkit")
    ok, why = loop_available()
    if not ok:
        raise PeerInstallError(why)
    return loop_python()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Install the OpenAPS (oref0) and Loop (pyloopkit) trial peers.")
    parser.add_argument("which", nargs="?", default="all", choices=("oref0", "loop", "all"))
    parser.add_argument("--check", action="store_true", help="only report whether they are usable")
    args = parser.parse_args(argv)
    status = 0
    for name, available, install in (("oref0", oref0_available, install_oref0), ("loop", loop_available, install_loop)):
        if args.which not in (name, "all"):
            continue
        if args.check:
            ok, why = available()
            print(f"{name}: {'ready' if ok else 'missing: ' + why}")
            status |= 0 if ok else 1
            continue
        try:
            print(f"{name}: ready at {install()}")
        except PeerInstallError as error:
            print(f"{name}: {error}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    raise SystemExit(main())
