"""Configuration: processing settings, premade pipelines, and loading/saving of settings files."""

from .premades import PREMADES, premade_settings
from .settings import Settings, load_settings_file

__all__ = ["Settings", "PREMADES", "premade_settings", "load_settings_file"]
