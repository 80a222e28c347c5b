"""Packaging: the licence README names is in the repository and listed for the wheel."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_license_file_is_mit_and_packaged() -> None:
    text = (ROOT / "LICENSE").read_text("utf-8")
    assert text.startswith("MIT License\n")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    assert project["license"] == "MIT"
    # setuptools copies license-files into the wheel's .dist-info/licenses/.
    assert "LICENSE" in project["license-files"]
    assert "MIT" in (ROOT / "README.md").read_text("utf-8").rsplit("## Licence", 1)[1]
