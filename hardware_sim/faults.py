"""Fault plans: what goes wrong on the air, chosen per run and reproducible from a seed.

A :class:`FaultPlan` is parsed from a CLI string such as::

    drop_every_min=120,drop_duration_min=30,corrupt_crc=0.02,duplicate=0.02,truncate=0.01,
    out_of_order=0.01,mtu=23,response_delay_ms=50,seed=1

Link-level faults (out-of-range periods, MTU cap, slow ATT responses) are applied by the air
(:mod:`hardware_sim.air`). Payload faults are applied by each device emulation to its own notifications:
it calls :meth:`FaultPlan.payload_faults` once per notification with its own ``random.Random`` (from
:meth:`FaultPlan.rng`) and acts on the returned :class:`PayloadFaults`.

Out-of-range windows (sim time): ``[k * drop_every_min, k * drop_every_min + drop_duration_min)`` for k >= 1.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, fields

_PROBABILITIES = ("corrupt_crc", "duplicate", "truncate", "out_of_order")
ALLOWED_MTUS = (23, 247)


class FaultPlanError(ValueError):
    """A fault plan string or value is invalid (unknown key, bad number, out of range)."""


@dataclass(frozen=True)
class PayloadFaults:
    """Faults to apply to ONE notification (decided by :meth:`FaultPlan.payload_faults`)."""

    corrupt_crc: bool = False
    duplicate: bool = False
    truncate: bool = False
    out_of_order: bool = False

    @property
    def any(self) -> bool:
        return self.corrupt_crc or self.duplicate or self.truncate or self.out_of_order


@dataclass(frozen=True)
class FaultPlan:
    """Seeded description of the faults of one simulation run; the default plan is a perfect link."""

    drop_every_min: float = 0.0
    """Period of out-of-range episodes in sim minutes (0 = never out of range)."""
    drop_duration_min: float = 0.0
    """Length of each out-of-range episode in sim minutes."""
    corrupt_crc: float = 0.0
    """Probability that a notification's E2E-CRC is corrupted."""
    duplicate: float = 0.0
    """Probability that a notification is sent twice."""
    truncate: float = 0.0
    """Probability that a notification loses its tail."""
    out_of_order: float = 0.0
    """Probability that a record is swapped with the next one."""
    mtu: int = 247
    """Largest ATT MTU the peripherals accept (23 or 247)."""
    response_delay_ms: float = 0.0
    """Real-time delay added to every ATT response of the peripherals."""
    seed: int = 0

    def __post_init__(self) -> None:
        for name in _PROBABILITIES:
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise FaultPlanError(f"{name} is a probability in [0, 1], got {value}")
        for name in ("drop_every_min", "drop_duration_min", "response_delay_ms"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise FaultPlanError(f"{name} must be finite and >= 0, got {value}")
        if self.drop_every_min and self.drop_duration_min >= self.drop_every_min:
            raise FaultPlanError("drop_duration_min must be shorter than drop_every_min")
        if self.drop_duration_min and not self.drop_every_min:
            raise FaultPlanError("drop_duration_min needs drop_every_min")
        if self.mtu not in ALLOWED_MTUS:
            raise FaultPlanError(f"mtu must be one of {ALLOWED_MTUS}, got {self.mtu}")

    # -- parsing ----------------------------------------------------------------------------------------------
    @classmethod
    def parse(cls, text: str | None) -> FaultPlan:
        """Parse ``key=value,key=value``; empty, ``none`` or ``None`` give the perfect link."""
        if text is None or text.strip().lower() in ("", "none", "off"):
            return cls()
        types = {field.name: field.type for field in fields(cls)}
        values: dict[str, float | int] = {}
        for item in text.split(","):
            if not item.strip():
                continue
            key, sep, raw = item.partition("=")
            key, raw = key.strip(), raw.strip()
            if not sep:
                raise FaultPlanError(f"expected key=value, got {item.strip()!r}")
            if key not in types:
                raise FaultPlanError(f"unknown fault {key!r}; known: {', '.join(types)}")
            if key in values:
                raise FaultPlanError(f"fault {key!r} given twice")
            try:
                values[key] = int(raw) if types[key] in ("int", int) else float(raw)
            except ValueError:
                raise FaultPlanError(f"{key}: {raw!r} is not a number") from None
        return cls(**values)  # type: ignore[arg-type]

    def to_string(self) -> str:
        """The CLI form, listing only what differs from the perfect link (round-trips through parse)."""
        default = FaultPlan()
        return ",".join(
            f"{key}={_number(value)}" for key, value in asdict(self).items() if getattr(default, key) != value
        )

    # -- link faults ------------------------------------------------------------------------------------------
    def in_range(self, sim_min: float) -> bool:
        """False while the peripherals are out of the hub's range."""
        if not self.drop_every_min or not self.drop_duration_min or sim_min < self.drop_every_min:
            return True
        return sim_min % self.drop_every_min >= self.drop_duration_min

    def next_range_change_min(self, sim_min: float) -> float | None:
        """Sim minute of the next going-out-of-range or coming-back (None on a perfect link)."""
        if not self.drop_every_min or not self.drop_duration_min:
            return None
        if sim_min < self.drop_every_min:
            return self.drop_every_min
        period_start = math.floor(sim_min / self.drop_every_min) * self.drop_every_min
        if sim_min < period_start + self.drop_duration_min:
            return period_start + self.drop_duration_min
        return period_start + self.drop_every_min

    # -- payload faults ---------------------------------------------------------------------------------------
    def rng(self, stream: str = "") -> random.Random:
        """A reproducible generator for one named stream (e.g. one device), independent of the others."""
        return random.Random(f"{self.seed}:{stream}")

    def payload_faults(self, rng: random.Random) -> PayloadFaults:
        """Decide the faults of one notification (always draws 4 numbers, so streams stay aligned)."""
        draws = [rng.random() for _ in _PROBABILITIES]
        return PayloadFaults(**{name: draw < getattr(self, name) for name, draw in zip(_PROBABILITIES, draws)})

    @property
    def has_payload_faults(self) -> bool:
        return any(getattr(self, name) for name in _PROBABILITIES)


def _number(value: float | int) -> str:
    """Shortest text that parses back to exactly ``value`` (repr of a float round-trips), without '.0'."""
    text = repr(value)
    return text[:-2] if text.endswith(".0") else text


def corrupt_crc(payload: bytes) -> bytes:
    """Flip one bit of the trailing 16-bit E2E-CRC (the payload stays the same length)."""
    if len(payload) < 2:
        return payload
    return payload[:-2] + bytes((payload[-2] ^ 0x01, payload[-1]))


def truncate(payload: bytes, rng: random.Random) -> bytes:
    """Drop 1..len-1 trailing octets (a non-empty payload keeps at least one octet)."""
    if len(payload) < 2:
        return payload
    return payload[: rng.randrange(1, len(payload))]
