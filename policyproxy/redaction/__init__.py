"""Body redaction on LLM endpoints (detectors, placeholders, restore)."""
