"""The hub agent: store, twin, forecast, recommend, alert and outbox, on a Raspberry-Pi-class board."""
