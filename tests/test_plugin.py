"""The pytest plugin: expectation files collected as test items, opt-in only.

Runs pytest inside pytest with the ``pytester`` fixture.  The plugin loads
through the package's ``pytest11`` entry point, exactly as in an operator's
repository; the inner runs pass no ``-p`` option.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

PLUGIN: tuple[str, ...] = ()


def test_entry_point_is_declared() -> None:
    from importlib.metadata import entry_points

    found = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert found.get("tlspolicy") == "tlspolicy.policytests.plugin"
DATA = resources.files("tlspolicy").joinpath("data")
EXAMPLE_TEXT = DATA.joinpath("example.toml").read_text("utf-8")
EXPECTATIONS_TEXT = DATA.joinpath("example-expectations.toml").read_text("utf-8")

CONFIG = '[global]\ntls = "ifavailable"\n[[domain]]\nname = "partner.example"\n' \
         'tls = "required"\ntls_verify = "host"\n'
CASES = """
config = "outbound.toml"

[[case]]
name = "partner is verified"
domain = "partner.example"
tls = "required"
verification = "host"
source.tls = 'domain "partner.example"'

[[case]]
name = "others are opportunistic"
domain = "other.example"
tls = "ifavailable"
outcome.handshake-failed = "fallback"
"""


def test_default_pattern_is_collected(pytester: pytest.Pytester) -> None:
    pytester.makefile(".toml", outbound=CONFIG)
    pytester.makefile(".tlspolicy-test.toml", policy=CASES)
    result = pytester.runpytest(*PLUGIN, "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([
        "*policy.tlspolicy-test.toml::partner is verified PASSED*",
        "*policy.tlspolicy-test.toml::others are opportunistic PASSED*",
    ])


def test_nothing_is_collected_without_opting_in(pytester: pytest.Pytester) -> None:
    pytester.makefile(".toml", outbound=CONFIG, cases=CASES)
    pytester.makepyfile(test_ordinary="def test_one():\n    assert True\n")
    result = pytester.runpytest(*PLUGIN)
    # Only the ordinary Python test ran: a TOML file is not a test unless asked for.
    result.assert_outcomes(passed=1)


def test_ini_globs_and_config(pytester: pytest.Pytester) -> None:
    pytester.mkdir("policy")
    pytester.mkdir("conf")
    Path(pytester.path / "conf" / "outbound.toml").write_text(CONFIG, "utf-8")
    # The ini configuration wins over the file's own 'config' key (which is missing here).
    Path(pytester.path / "policy" / "main.tlspolicy.toml").write_text(
        CASES.replace('config = "outbound.toml"\n', ""), "utf-8")
    Path(pytester.path / "policy" / "ignored.toml").write_text("not toml at all [", "utf-8")
    pytester.makeini("[pytest]\ntlspolicy_expectations = policy/*.tlspolicy.toml\n"
                     "tlspolicy_config = conf/outbound.toml\n")
    result = pytester.runpytest(*PLUGIN, "policy")
    result.assert_outcomes(passed=2)


def test_failure_report_is_the_cli_report(pytester: pytest.Pytester) -> None:
    weakened = EXAMPLE_TEXT.replace(
        'tls_verify = "host"\ntls_ca = "/etc/tlspolicy/ca/payroll',
        'tls_verify = "optional"\ntls_ca = "/etc/tlspolicy/ca/payroll').replace(
        # The payroll floor holds the host check too: relax it as well.
        'tls_verify = "host"\nreason = "payroll contract',
        'tls_verify = "optional"\nreason = "payroll contract')
    assert weakened != EXAMPLE_TEXT
    pytester.makefile(".toml", example=weakened)
    pytester.makefile(".tlspolicy-test.toml", example=EXPECTATIONS_TEXT)
    result = pytester.runpytest(*PLUGIN)
    outcomes = result.parseoutcomes()
    # Case #2 and the two cases of the payroll floor through other pools.
    assert outcomes["failed"] == 3
    assert outcomes["passed"] >= 15
    result.stdout.fnmatch_lines([
        '*case #2 "payroll partner: required TLS, host verified"*FAILED*',
        "*verification           expected host, got optional*",
        '*actual value from: domain "payroll-partner.example"*',
        "*outcome.name-mismatch  expected fail, got proceed*",
        "*configuration: *example.toml*",
    ])
    # No Python traceback of the plugin's internals in the report.
    assert "def runtest" not in result.stdout.str()


def test_bad_expectation_file_is_a_located_collection_error(pytester: pytest.Pytester) -> None:
    pytester.makefile(".tlspolicy-test.toml",
                      bad='[[case]]\ndomain = "a.example"\noutcome.handshake-failed = "bounce"\n')
    result = pytester.runpytest(*PLUGIN)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "*bad.tlspolicy-test.toml:3: case #1: option 'outcome.handshake-failed': unknown action*",
    ])


def test_bad_configuration_errors_every_case(pytester: pytest.Pytester) -> None:
    pytester.makefile(".toml", outbound='[global]\ntls = "requried"\n')
    pytester.makefile(".tlspolicy-test.toml", policy=CASES)
    result = pytester.runpytest(*PLUGIN)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*ERROR*", "*error: configuration: *outbound.toml:2*requried*"])


def test_bundled_example_when_no_config_is_named(pytester: pytest.Pytester) -> None:
    pytester.makefile(".tlspolicy-test.toml", policy=EXPECTATIONS_TEXT.replace(
        'config = ["example.toml"]\n', ""))
    result = pytester.runpytest(*PLUGIN)
    assert result.parseoutcomes()["passed"] >= 15
    assert "failed" not in result.parseoutcomes()


def test_junit_xml_names_cases(pytester: pytest.Pytester) -> None:
    pytester.makefile(".toml", outbound=CONFIG)
    pytester.makefile(".tlspolicy-test.toml", policy=CASES)
    result = pytester.runpytest(*PLUGIN, "--junitxml=out.xml")
    result.assert_outcomes(passed=2)
    text = (pytester.path / "out.xml").read_text("utf-8")
    assert 'name="partner is verified"' in text


def test_pyproject_lists(pytester: pytest.Pytester) -> None:
    pytester.mkdir("policy")
    Path(pytester.path / "policy" / "outbound.toml").write_text(CONFIG, "utf-8")
    Path(pytester.path / "policy" / "a.tlspolicy.toml").write_text(
        CASES.replace('config = "outbound.toml"\n', ""), "utf-8")
    pytester.makepyprojecttoml(
        '[tool.pytest.ini_options]\ntlspolicy_expectations = ["policy/*.tlspolicy.toml"]\n'
        'tlspolicy_config = ["policy/outbound.toml"]\n')
    result = pytester.runpytest(*PLUGIN, "policy")
    result.assert_outcomes(passed=2)


def test_library_side_does_not_import_pytest() -> None:
    import subprocess
    import sys

    code = ("import sys, tlspolicy.policytests, tlspolicy.cli.policytests; "
            "assert 'pytest' not in sys.modules, 'pytest imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
