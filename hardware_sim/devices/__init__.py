"""Emulated devices on the far side of the radio.

* :mod:`.glucose_source` - what drives them: ``GlucoseSource`` (interstitial glucose at a sim minute) and
  ``InsulinSink`` (where a pump's insulin goes); a scripted trace and a ledger for tests.
* :mod:`.cgm_model` / :mod:`.cgm_sensor` - a CGM sensor's state and its CGMS (0x181F) GATT front end.
* :mod:`.pump_model` / :mod:`.ids_pump` - an insulin pump's state and its IDS (0x183A) GATT front end.

Front ends implement :class:`hardware_sim.air.peripheral.EmulatedPeripheral` and are served by
:func:`hardware_sim.air.server.serve` (``glucotwin sim serve``) or :class:`hardware_sim.air.inprocess.InProcessAir`.
"""
