"""The twin's model, the forecaster, and their training and evaluation."""
