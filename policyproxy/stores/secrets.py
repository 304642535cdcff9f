"""The mapping store's own secrets (the Redis password, the operator's mapping key), read from their
env var or file at start. Errors name the config key and the source, never a value."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from policyproxy.config.schema import RedactionSpec, SecretRef

MIN_MAPPING_KEY = 32   # characters of the operator's mapping key (e.g. ``openssl rand -base64 32``)
ReadFile = Callable[[str], str]
Report = Callable[[str, str], None]   # (config key, message)


def resolve_store_secrets(spec: RedactionSpec, env: Mapping[str, str], read_file: ReadFile,
                          error: Report) -> tuple[str | None, bytes | None]:
    """The Redis password and the mapping key, read from their sources."""
    password = key = None
    if spec.mapping_store_password is not None:
        password = _resolve(spec.mapping_store_password, env, read_file, "redaction.mapping_store_password", error)
    if spec.mapping_key is not None:
        text = _resolve(spec.mapping_key, env, read_file, "redaction.mapping_key", error)
        if text is not None and len(text) < MIN_MAPPING_KEY:
            error("redaction.mapping_key", f"the key from {spec.mapping_key.describe()} is shorter than "
                  f"{MIN_MAPPING_KEY} characters (make one with: openssl rand -base64 32)")
        elif text is not None:
            key = text.encode()
    return password, key


def _resolve(ref: SecretRef, env: Mapping[str, str], read_file: ReadFile, key: str, error: Report) -> str | None:
    if ref.env_var is not None:
        value = env.get(ref.env_var)
        if value is None:
            error(f"{key}_env", f"names {ref.env_var}, a missing required environment variable")
            return None
        value = value.strip()
        origin = f"environment variable {ref.env_var}"
    else:
        assert ref.file is not None
        try:
            value = read_file(ref.file)
        except OSError as exc:
            error(f"{key}_file", f"cannot read {ref.file}: {exc.strerror or type(exc).__name__}")
            return None
        except UnicodeDecodeError:
            error(f"{key}_file", f"{ref.file} is not UTF-8 text")
            return None
        origin = f"file {ref.file}"
    if not value:
        error(key, f"the secret from {origin} is empty")
        return None
    if any(c in value for c in "\r\n\0") or not value.isprintable():
        error(key, f"the secret from {origin} contains a line break or control character")
        return None
    return value
