"""The bundled example configuration (package data), for trying the tool and for tests."""

from __future__ import annotations

from importlib import resources
from typing import Final

import tomli_w

from ..scopes import Config
from .toml import loads_toml

__all__ = ["EXAMPLE_NAME", "EXAMPLE_TLS_DIR", "example_config", "example_files", "example_text"]

EXAMPLE_NAME: Final = "example.toml"
"""The file name of the bundled example inside the package's ``data`` folder."""


#: Where the bundled example names its certificate and key files; :func:`example_files`
#: writes them under another directory.
EXAMPLE_TLS_DIR: Final = "/etc/tlspolicy/"
# The package data folder holding those files (made for the example: long-lived, their
# organisation says they are example data, never to be used).
_TLS_DATA: Final = "example-tls"


def example_files(directory: str) -> dict[str, bytes]:
    """The bundled example as files under ``directory`` (relative name -> content):
    ``example.toml`` naming its certificate and key files under ``directory``, those
    files, and ``example-expectations.toml`` (the example's policy tests)."""
    data = resources.files("tlspolicy").joinpath("data")
    # The names stand in TOML basic strings: a quote or backslash in the directory's name
    # is escaped, or the files written would not load.
    prefix = _in_basic_string(directory.rstrip("/") + "/")
    files = {EXAMPLE_NAME: example_text().replace(EXAMPLE_TLS_DIR, prefix).encode(),
             "example-expectations.toml": data.joinpath("example-expectations.toml")
             .read_text("utf-8").replace(EXAMPLE_TLS_DIR, prefix).encode()}
    for kind in ("ca", "client"):
        for item in sorted(data.joinpath(_TLS_DATA, kind).iterdir(), key=lambda i: i.name):
            files[f"{kind}/{item.name}"] = item.read_bytes()
    return files


def _in_basic_string(text: str) -> str:
    # tomli_w writes a string as a TOML basic string: its body is what stands between
    # the quotes of ``s = "..."``.
    return tomli_w.dumps({"s": text})[len('s = "'):-len('"\n')]


def example_text() -> str:
    """The bundled example configuration as TOML text."""
    return resources.files("tlspolicy").joinpath("data", EXAMPLE_NAME).read_text("utf-8")


def example_config() -> Config:
    """The bundled example configuration, loaded."""
    return loads_toml(example_text(), f"bundled {EXAMPLE_NAME}")
