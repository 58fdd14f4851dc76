"""Typed settings: `config/default.toml`, an optional overlay file, then `JUHE_*` variables."""

from config.settings import Settings, load_settings

__all__ = ["Settings", "load_settings"]
