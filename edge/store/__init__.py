"""The hub's local store: one SQLite file (WAL, synchronous=FULL), a versioned schema with migrations."""

from .database import CorruptStoreError, HubStore, StoreError, StoreFullError
from .records import CarbEntry, InsulinEvent, StoredReading

__all__ = [
    "CarbEntry",
    "CorruptStoreError",
    "HubStore",
    "InsulinEvent",
    "StoreError",
    "StoreFullError",
    "StoredReading",
]
