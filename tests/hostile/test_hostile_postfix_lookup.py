"""Finding: a test compared a Postfix lookup cached at import time with a live one.

When Postfix was installed during the run (CI installs packages beside the
tests), the import-time ``None`` met a live path and the test failed.  The
check now accepts that, and still refuses a cached path that went stale.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import postfix_support
from postfix_support import cached_lookup_is_consistent


def _install_fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> Path:
    program = tmp_path / name
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(postfix_support, "_SEARCH_DIRS", (str(tmp_path),))
    return program


def test_postfix_installed_after_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(postfix_support, "_SEARCH_DIRS", (str(tmp_path),))
    cached = postfix_support.find_postfix_binary("postfix")
    assert cached is None  # "not installed" at import time
    _install_fake(tmp_path, monkeypatch, "postfix")  # then the package arrives
    assert postfix_support.find_postfix_binary("postfix") is not None
    assert cached_lookup_is_consistent(cached, "postfix")


def test_stale_cached_path_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    program = _install_fake(tmp_path, monkeypatch, "postmap")
    assert cached_lookup_is_consistent(str(program), "postmap")
    os.unlink(program)
    assert not cached_lookup_is_consistent(str(program), "postmap")
