"""``tlspolicy example DIR``: the bundled example passes ``check`` and its own policy
tests once written out with the certificate files it names, and serves a demo."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ports import free_port
from postfix_support import find_postfix_binary, postmap_config_dir, postmap_query


def tlspolicy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tlspolicy", *args], capture_output=True,
                          text=True, timeout=120, check=False)


def test_written_example_checks_and_tests_clean(tmp_path: Path) -> None:
    target = tmp_path / "demo"
    written = tlspolicy("example", str(target))
    assert written.returncode == 0, written.stderr
    config = target / "example.toml"
    assert "/etc/tlspolicy" not in config.read_text()
    checked = tlspolicy("check", str(config))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = tlspolicy("test", str(target / "example-expectations.toml"))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "0 failed, 0 errors" in tested.stdout
    for key in (target / "client").glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    # Never over what is there.
    again = tlspolicy("example", str(target))
    assert again.returncode == 2 and "nothing written" in again.stderr


def test_an_example_written_where_the_name_holds_quotes_still_loads(tmp_path: Path) -> None:
    """The directory's name stands in TOML strings: a quote or backslash in it is escaped,
    so what ``example`` writes (and says is ready) checks and tests clean."""
    target = tmp_path / 'ex"q\\z'
    assert tlspolicy("example", str(target)).returncode == 0
    checked = tlspolicy("check", str(target / "example.toml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = tlspolicy("test", str(target / "example-expectations.toml"))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_a_directory_name_that_is_not_utf8_is_a_usage_error(tmp_path: Path) -> None:
    target = os.fsencode(tmp_path) + b"/bad\xffbyte"
    written = subprocess.run([sys.executable, "-m", "tlspolicy", "example", target],
                             capture_output=True, timeout=120, check=False)
    assert written.returncode == 2, written.stderr
    assert b"not UTF-8" in written.stderr and b"Traceback" not in written.stderr


def test_bundled_example_alone_names_missing_files(tmp_path: Path) -> None:
    """The example as bundled names /etc/tlspolicy paths (a real deployment's): check
    reports each missing file by scope and option, and README points at ``example``."""
    from tlspolicy.formats.bundled import example_text

    path = tmp_path / "example.toml"
    path.write_text(example_text())
    checked = tlspolicy("check", str(path))
    assert checked.returncode == 1
    assert "option 'tls_ca': cannot read the file" in checked.stdout + checked.stderr


def test_demo_serves_the_written_example(tmp_path: Path) -> None:
    if find_postfix_binary("postmap") is None:
        pytest.skip("postmap (Debian package postfix) is not installed")
    target = tmp_path / "demo"
    assert tlspolicy("example", str(target)).returncode == 0
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tlspolicy", "serve", "socketmap", str(target / "example.toml"),
         "--listen", f"127.0.0.1:{port}", "--postfix-version", "3.7.11",
         "--no-postfix-checks"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("listening on")
        found = postmap_query(postmap_config_dir(tmp_path / "postmap"),
                              f"socketmap:inet:127.0.0.1:{port}:tx-us-1",
                              "payroll-partner.example")
        answer = found.stdout.strip()
        assert found.returncode == 0, found.stderr
        assert answer.startswith("verify match=hostname:nexthop tafile="), answer
        assert str(target / "ca" / "payroll-partner.pem") in answer
    finally:
        process.terminate()
        process.wait(20)


def test_every_hint_the_command_prints_runs(tmp_path: Path) -> None:
    """The commands ``example`` suggests (check, test, resolve) run as printed."""
    import shlex

    written = tlspolicy("example", str(tmp_path / "demo"))
    assert written.returncode == 0, written.stderr
    hints = [line.strip() for line in written.stdout.splitlines()
             if line.startswith("  tlspolicy ") and " serve " not in line]
    assert [h.split()[1] for h in hints] == ["check", "test", "resolve"], written.stdout
    for hint in hints:
        ran = tlspolicy(*shlex.split(hint)[1:])
        assert ran.returncode == 0, (hint, ran.stdout, ran.stderr)
    assert "127.0.0.1:10027" in written.stdout
