"""The physiological twin: the MVP model, its Kalman filter, and the DigitalTwin that runs them."""
