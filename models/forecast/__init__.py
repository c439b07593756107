"""Glucose forecasters: baselines behind one interface (the twin and, later, the ONNX model plug in)."""
