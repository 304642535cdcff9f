"""Persistence on the I/O side of the redaction core (``redaction.placeholders.MappingStore``)."""
