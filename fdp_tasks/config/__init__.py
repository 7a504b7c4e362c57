"""User config (config.yaml): loading, validation, template variables, versions, resolution."""

from fdp_tasks.config.load import Config, load_config
from fdp_tasks.config.resolve import RegistryView, ResolveContext, resolve
from fdp_tasks.config.validate import validate_config

__all__ = [
    "Config",
    "RegistryView",
    "ResolveContext",
    "load_config",
    "resolve",
    "validate_config",
]
