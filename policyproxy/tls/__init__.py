"""TLS interception material: the CA on disk and per-host leaf certificates."""
