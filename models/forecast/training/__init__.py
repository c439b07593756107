"""Training the learned glucose forecaster (needs the ``training`` extra: torch, onnx).

``dataset`` (numpy only) turns a virtual-patient ``dataset.npz`` (made by ``hardware_sim.datasets``) into
feature/target arrays with the shared feature module ``models.forecast.features``; ``train`` (torch) fits the
network and exports ``models/forecast/glucose_forecaster.onnx`` with its sidecar JSON.
"""
