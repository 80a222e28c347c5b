"""Loading holds the cyclic collector off, then leaves it as it found it.

The load's objects are moved to the oldest generation at the end (freeze, then
unfreeze), so nothing may stay frozen, the collector's on/off state is the caller's,
and a cycle the caller dropped is still collected.
"""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

from tlspolicy import load_config


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text('[global]\ntls = "ifavailable"\n[[domain]]\nname = "example.com"\n'
                    'tls = "required"\n')
    return path


def test_loading_leaves_the_collector_on_and_nothing_frozen(tmp_path: Path) -> None:
    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    del a, b
    load_config(_config(tmp_path))
    assert gc.isenabled()
    assert gc.get_freeze_count() == frozen
    gc.collect()
    assert gone() is None


def test_loading_leaves_an_off_collector_off(tmp_path: Path) -> None:
    gc.disable()
    try:
        load_config(_config(tmp_path))
        assert not gc.isenabled()
    finally:
        gc.enable()
