"""Evaluation plugin: importing it registers ``onnx`` and ``hub`` and names ``hub`` the hub's method.

    glucotwin eval forecast --recording R.csv --plugin models.forecast.onnx_plugin
"""

from models.forecast.onnx_forecaster import register

register()
