"""Hub configuration: TOML loading, defaults per age group, and refusal of bad values with the key named."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import ConfigError, load_config

GOOD = """
storage_path = "hub.sqlite"
units = "mmol/L"
[devices]
transport = "tcp-client:127.0.0.1:9001"
[therapy]
age_group = "child"
body_weight_kg = 30
basal_u_per_h = 0.5
insulin_sensitivity_mg_dl_per_u = 120
carb_ratio_g_per_u = 20
[limits]
max_bolus_u = 4
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(text)
    return path


def test_good_config_loads_with_age_group_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    assert config.limits.max_bolus_u == 4
    assert config.limits.max_iob_u == 7  # child default
    assert config.storage_path == tmp_path / "hub.sqlite"
    assert config.devices.transport == "tcp-client:127.0.0.1:9001"
    assert config.display_glucose(180.16) == "10.0 mmol/L"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD.replace("max_bolus_u = 4", "max_bolus_u = 40"), "max_bolus_u"),
        (GOOD.replace("carb_ratio_g_per_u = 20", "carb_ratio_g_per_u = 0"), "carb_ratio_g_per_u"),
        (GOOD.replace('age_group = "child"', 'age_group = "toddler"'), "age_group"),
        (GOOD.replace("[therapy]", "[therapy]\nfoo = 1"), "unknown keys: foo"),
        (GOOD.replace('units = "mmol/L"', 'units = "mg"'), "units"),
        ("[devices]\n", r"\[therapy\] is required"),
        ("this is = = not toml", "not valid TOML"),
    ],
)
def test_bad_config_is_refused_naming_the_problem(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
