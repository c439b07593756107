"""Hub-side device sessions over the plain bleak API (any backend: BlueZ on a Pi, bumble against the simulator).

* :mod:`.tracking` - pure bookkeeping of CGM readings: gap detection, de-duplication, ordering.
* :mod:`.cgm_session` - follow a CGMS sensor: every reading exactly once, in order, across link drops.
* :mod:`.pump_session` - an IDS pump: status, history, and dosing commands only with a person's confirmation.
"""
