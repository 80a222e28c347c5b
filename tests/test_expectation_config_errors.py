"""A configuration named by an expectation file's own ``config`` key that cannot be
loaded is reported at that key: the expectation file, the key's line, then the
configuration's own error (a directory or a missing file names no expectation file)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tlspolicy import cli

pytest_plugins = ["pytester"]

CASES = '# policy tests\nconfig = "conf"\n\n[[case]]\ndomain = "a.example"\ntls = "no"\n'


def test_cli_names_the_expectation_file_and_its_config_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "conf").mkdir()
    exp = tmp_path / "e.toml"
    exp.write_text(CASES, "utf-8")
    other = tmp_path / "f.toml"
    other.write_text("\n" + CASES, "utf-8")
    xml = tmp_path / "j.xml"
    code = cli.main(["test", str(exp), str(other), "--junit-xml", str(xml)])
    out = capsys.readouterr().out
    assert code == 2
    conf = tmp_path / "conf"
    # Each file that names it is said, at its own line, with the configuration's error.
    assert f"{exp}:2: option 'config': {conf}: file is a directory" in out
    assert f"{other}:3: option 'config': {conf}: file is a directory" in out
    errors = ET.parse(xml).getroot().findall("testsuite/testcase/error")
    assert [e.get("message", "").split(": option")[0] for e in errors] == [
        f"{exp}:2", f"{other}:3"]


def test_cli_keeps_the_configurations_own_location_for_config_given_on_the_command_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "conf").mkdir()
    exp = tmp_path / "e.toml"
    exp.write_text(CASES.replace('config = "conf"\n', ""), "utf-8")
    code = cli.main(["test", str(exp), "--config", str(tmp_path / "conf")])
    out = capsys.readouterr().out
    assert code == 2
    assert f"{tmp_path / 'conf'}: file is a directory" in out
    assert f"{exp}:" not in out


def test_plugin_names_the_expectation_file_and_its_config_key(
        pytester: pytest.Pytester) -> None:
    pytester.mkdir("conf")
    pytester.makefile(".tlspolicy-test.toml", policy=CASES)
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*error: configuration: *policy.tlspolicy-test.toml:2: option 'config': *conf: file "
        "is a directory*"])
