"""Deterministic random streams for in-silico trials.

Every random draw of a trial belongs to one *row* (one virtual subject under one trial seed) and one
*component* (meals, sensor noise, dropouts, ...). Each (seed, subject key, replicate, component) gets its own
``numpy.random.Generator`` built from a ``SeedSequence``. Because no stream is shared between rows, a row's
trajectory does not depend on which other rows run beside it, how rows are chunked, or on which process they
run: the single-process run and the dask run give identical numbers, and every arm of a trial sees the same
meals and sensor errors for the same subject and seed (Patek et al. 2009, JDST 3:269).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

#: Component identifiers: fixed numbers, so adding a component never shifts another one's stream.
STREAM_IDS: dict[str, int] = {
    "scenario.meals": 1,
    "scenario.announcements": 2,
    "scenario.sensitivity": 3,
    "scenario.dawn": 4,
    "scenario.pump_faults": 5,
    "sensor.noise": 11,
    "sensor.drift": 12,
    "sensor.sessions": 13,
    "sensor.dropouts": 14,
    "sensor.compression": 15,
}


def subject_key(name: str) -> int:
    """A stable 32-bit key for a subject name (CRC-32; Python's ``hash`` is salted per process)."""
    return zlib.crc32(name.encode("utf-8"))


def row_generator(seed: int, key: int, replicate: int, stream: str) -> np.random.Generator:
    """The generator of one row's component ``stream`` (see :data:`STREAM_IDS`)."""
    if stream not in STREAM_IDS:
        raise KeyError(f"unknown random stream {stream!r}; known: {sorted(STREAM_IDS)}")
    if seed < 0:
        raise ValueError(f"seeds must be non-negative integers, got {seed}")
    sequence = np.random.SeedSequence(entropy=int(seed), spawn_key=(int(key), int(replicate), STREAM_IDS[stream]))
    return np.random.Generator(np.random.PCG64(sequence))


class RowStreams:
    """Random streams of M rows: ``streams("sensor.noise")`` -> one generator per row, in row order."""

    def __init__(self, seeds: Sequence[int], keys: Sequence[int], replicates: Sequence[int] | None = None):
        if len(seeds) != len(keys):
            raise ValueError(f"{len(seeds)} seeds for {len(keys)} row keys")
        self.seeds = tuple(int(s) for s in seeds)
        self.keys = tuple(int(k) for k in keys)
        self.replicates = tuple(int(r) for r in (replicates if replicates is not None else [0] * len(seeds)))
        if len(self.replicates) != len(self.seeds):
            raise ValueError("replicates must have one entry per row")

    def __len__(self) -> int:
        return len(self.seeds)

    def __call__(self, stream: str) -> list[np.random.Generator]:
        return [row_generator(s, k, r, stream) for s, k, r in zip(self.seeds, self.keys, self.replicates)]

    @classmethod
    def from_seed(cls, seed: int, n_rows: int) -> "RowStreams":
        """M independent rows under one seed (rows keyed 0..M-1): handy for standalone use and tests."""
        return cls([seed] * n_rows, list(range(n_rows)))

    def take(self, indices: Sequence[int]) -> "RowStreams":
        return RowStreams([self.seeds[i] for i in indices], [self.keys[i] for i in indices],
                          [self.replicates[i] for i in indices])
