"""The "hub itself is not working" check, run OUTSIDE the hub process (systemd timer, cron, a second board).

A hub that hangs or crash-loops cannot warn about itself, so the hub writes a heartbeat file every
10 s and this separate check raises the alarm when the heartbeat is older than ``max_age_s`` or the local API
does not answer. Exit code 0 = working, 1 = NOT working (the message says why), so it composes with systemd's
``OnFailure=`` or any notifier; ``--alarm-command`` runs a command (e.g. a buzzer or a push message) on failure.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests


@dataclass(frozen=True)
class WatchdogVerdict:
    ok: bool
    message: str


def check_hub(heartbeat_path: Path, hub_url: str | None, max_age_s: float = 60.0,
              now_s: float | None = None) -> WatchdogVerdict:
    now_s = time.time() if now_s is None else now_s
    try:
        beat_s = float(heartbeat_path.read_text().strip())
    except FileNotFoundError:
        return WatchdogVerdict(False, f"THE HUB IS NOT WORKING: no heartbeat file at {heartbeat_path}")
    except (OSError, ValueError) as error:
        return WatchdogVerdict(False, f"THE HUB IS NOT WORKING: heartbeat unreadable ({error})")
    age_s = now_s - beat_s
    if age_s > max_age_s:
        return WatchdogVerdict(False, f"THE HUB IS NOT WORKING: last heartbeat {age_s:.0f} s ago")
    if hub_url:
        try:
            response = requests.get(hub_url.rstrip("/") + "/healthz", timeout=10)
        except requests.RequestException as error:
            return WatchdogVerdict(False, f"THE HUB IS NOT WORKING: its page does not answer ({type(error).__name__})")
        if response.status_code != 200:
            return WatchdogVerdict(False, f"THE HUB IS NOT WORKING: health check says {response.text[:200]}")
    return WatchdogVerdict(True, f"hub working (heartbeat {age_s:.0f} s ago)")


def run_watchdog(heartbeat_path: Path, hub_url: str | None, max_age_s: float, alarm_command: str | None) -> int:
    verdict = check_hub(heartbeat_path, hub_url, max_age_s)
    print(verdict.message)
    if not verdict.ok and alarm_command:
        subprocess.run(alarm_command, shell=True, check=False, input=verdict.message.encode(), timeout=60)
    return 0 if verdict.ok else 1
