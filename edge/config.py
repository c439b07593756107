"""The hub's configuration: one TOML file, validated on load with errors that name the key.

Example (every key optional except ``[therapy]``; see ``edge/example-hub.toml``)::

    storage_path = "var/hub.sqlite"
    units = "mg/dL"                      # or "mmol/L" for display; the hub computes in mg/dL

    [devices]
    transport = "tcp-client:127.0.0.1:9001"   # a bumble HCI transport spec; omit for BlueZ
    cgm_name = ""                        # optional advertised-name filter
    pump = true

    [therapy]
    age_group = "adult"
    body_weight_kg = 70
    basal_u_per_h = 1.0
    insulin_sensitivity_mg_dl_per_u = 50
    carb_ratio_g_per_u = 10
    target_mg_dl = 110

    [limits]                             # defaults per age group; only inside the absolute bounds
    max_bolus_u = 10

    [cloud]
    url = "http://127.0.0.1:8000"

    [web]
    host = "127.0.0.1"
    port = 8080
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .safety import LimitOutOfBounds, SafetyLimits, default_limits
from .therapy_settings import InvalidTherapySettings, TherapySettings

MG_DL_PER_MMOL_L = 18.016


class ConfigError(ValueError):
    """The configuration file is missing, not TOML, or holds a value the hub refuses."""


@dataclass(frozen=True)
class DeviceConfig:
    transport: str | None = None
    cgm_name: str = ""
    pump: bool = True


@dataclass(frozen=True)
class CloudConfig:
    url: str | None = None
    enrollment_code: str | None = None


@dataclass(frozen=True)
class WebConfig:
    host: str = "127.0.0.1"
    port: int = 8080


@dataclass(frozen=True)
class HubConfig:
    therapy: TherapySettings
    limits: SafetyLimits
    storage_path: Path = Path("var/hub.sqlite")
    units: str = "mg/dL"
    devices: DeviceConfig = field(default_factory=DeviceConfig)
    cloud: CloudConfig = field(default_factory=CloudConfig)
    web: WebConfig = field(default_factory=WebConfig)

    def display_glucose(self, glucose_mg_dl: float) -> str:
        if self.units == "mmol/L":
            return f"{glucose_mg_dl / MG_DL_PER_MMOL_L:.1f} mmol/L"
        return f"{glucose_mg_dl:.0f} mg/dL"


def _section(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{name}] must be a table")
    return value


def _build(cls: type, values: dict[str, Any], section: str) -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"[{section}] has unknown keys: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    try:
        return cls(**values)
    except (InvalidTherapySettings, LimitOutOfBounds) as error:
        raise ConfigError(f"[{section}] {error}") from error
    except TypeError as error:
        raise ConfigError(f"[{section}] {error}") from error


def config_from_dict(data: dict[str, Any], *, base_dir: Path = Path(".")) -> HubConfig:
    if "therapy" not in data:
        raise ConfigError("[therapy] is required: the hub never doses without the prescribed settings")
    therapy = _build(TherapySettings, _section(data, "therapy"), "therapy")
    limit_values = dataclasses.asdict(default_limits(therapy.age_group))
    overrides = _section(data, "limits")
    unknown = sorted(set(overrides) - set(limit_values))
    if unknown:
        raise ConfigError(f"[limits] has unknown keys: {', '.join(unknown)}")
    limit_values.update(overrides)
    limits = _build(SafetyLimits, limit_values, "limits")
    units = data.get("units", "mg/dL")
    if units not in ("mg/dL", "mmol/L"):
        raise ConfigError(f"units must be 'mg/dL' or 'mmol/L', not {units!r}")
    storage = Path(data.get("storage_path", "var/hub.sqlite"))
    known_top = {"therapy", "limits", "devices", "cloud", "web", "units", "storage_path"}
    unknown_top = sorted(set(data) - known_top)
    if unknown_top:
        raise ConfigError(f"unknown top-level keys: {', '.join(unknown_top)}")
    return HubConfig(
        therapy=therapy,
        limits=limits,
        storage_path=storage if storage.is_absolute() else base_dir / storage,
        units=units,
        devices=_build(DeviceConfig, _section(data, "devices"), "devices"),
        cloud=_build(CloudConfig, _section(data, "cloud"), "cloud"),
        web=_build(WebConfig, _section(data, "web"), "web"),
    )


def load_config(path: str | Path) -> HubConfig:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from error
    return config_from_dict(data, base_dir=path.parent)
