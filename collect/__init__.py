"""edge-collect: the plant's event store behind the MQTT broker (events, devices, models) and its report."""
