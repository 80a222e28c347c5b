"""The bundled example configuration (package data), for trying the tool and for tests."""

from __future__ import annotations

from importlib import resources
from typing import Final

from ..scopes import Config
from .toml import loads_toml

__all__ = ["EXAMPLE_NAME", "example_config", "example_text"]

EXAMPLE_NAME: Final = "example.toml"
"""The file name of the bundled example inside the package's ``data`` folder."""


def example_text() -> str:
    """The bundled example configuration as TOML text."""
    return resources.files("tlspolicy").joinpath("data", EXAMPLE_NAME).read_text("utf-8")


def example_config() -> Config:
    """The bundled example configuration, loaded."""
    return loads_toml(example_text(), f"bundled {EXAMPLE_NAME}")
