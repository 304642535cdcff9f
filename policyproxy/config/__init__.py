"""Configuration: TOML files -> validated, immutable ``Settings``."""

from policyproxy.config.load import find_config, home_dir, load_settings, settings_from_sources
from policyproxy.config.schema import Settings

__all__ = ["Settings", "find_config", "home_dir", "load_settings", "settings_from_sources"]
