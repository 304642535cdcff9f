"""Decision events: attributes (pure), OpenTelemetry export and the JSONL audit log."""
