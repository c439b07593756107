"""The hub agent: the per-reading pipeline (pure of radios) and the always-on service around it."""
