"""Forecast evaluation: metrics, error grids, recording loaders and a causal replay harness."""
