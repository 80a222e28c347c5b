"""Expectation files and ``tlspolicy test``: the format, located errors, reports, JUnit XML.

The bundled example ships with an expectation file that must pass; a
deliberately weakened copy of the example must make ``tlspolicy test`` fail
with a report naming expected and actual values and where the actual values
came from.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from importlib import resources
from pathlib import Path

import pytest

from tlspolicy import (
    Action,
    ConfigError,
    ConfigErrors,
    Observation,
    Resolver,
    StsMode,
    Tls,
    TlsaLookupStatus,
    Verification,
    cli,
    loads_toml,
)
from tlspolicy.options import TlsVerify
from tlspolicy.policytests import (
    ExpectationError,
    load_expectations,
    loads_expectations,
    run_case,
)
from tlspolicy.policytests.expectations import (
    POSSIBLE_ACTIONS,
    ImpossibleExpectationError,
    InvalidExpectationError,
    UnknownExpectationKeyError,
)
from tlspolicy.policytests.runner import format_failure, run_file

DATA = resources.files("tlspolicy").joinpath("data")
EXAMPLE = Path(str(DATA.joinpath("example.toml")))
EXPECTATIONS = Path(str(DATA.joinpath("example-expectations.toml")))


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
            *argv: str) -> tuple[int, str, str]:
    """Run the real command line."""
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def weakened_example(tmp: Path) -> Path:
    """The example with the payroll partner's host check relaxed and fallback turned on."""
    text = EXAMPLE.read_text("utf-8")
    weakened = (text.replace('tls_verify = "host"\ntls_ca = "/etc/tlspolicy/ca/payroll',
                             'tls_verify = "optional"\ntls_ca = "/etc/tlspolicy/ca/payroll')
                # The payroll floor holds the host check too: relax it as well.
                .replace('tls_verify = "host"\nreason = "payroll contract',
                         'tls_verify = "optional"\nreason = "payroll contract')
                .replace('name = "transactional"\ntls_verify = "ca"\ntls_ifavailable_fallback '
                         '= false', 'name = "transactional"\ntls_verify = "ca"\n'
                         'tls_ifavailable_fallback = true'))
    assert weakened.count("optional") == text.count("optional") + 2
    assert weakened != text
    path = tmp / "weakened.toml"
    path.write_text(weakened, "utf-8")
    return path


# ------------------------------------------------------------------ the bundled example

def test_bundled_expectations_pass_against_the_bundled_example() -> None:
    expectations = load_expectations(EXPECTATIONS)
    assert len(expectations.cases) >= 15
    assert expectations.config == (str(EXAMPLE),)
    results = run_file(expectations, cli.example_config())
    failed = [format_failure(r) for r in results if not r.passed]
    assert not failed, "\n\n".join(failed)


def test_bundled_expectations_cover_destination_inputs() -> None:
    cases = load_expectations(EXPECTATIONS).cases
    with_inputs = [c for c in cases if c.destination is not None]
    assert len(with_inputs) >= 4
    kinds = set()
    for case in with_inputs:
        d = case.destination
        assert d is not None
        if d.mta_sts is not None:
            kinds.add("mta-sts")
        if d.tlsa is not None:
            kinds.add("dane")
        if d.requiretls:
            kinds.add("requiretls")
        if d.tls_broken:
            kinds.add("broken")
    assert kinds == {"mta-sts", "dane", "requiretls", "broken"}


def test_cli_test_passes_on_the_bundled_example(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(monkeypatch, capsys, "test", str(EXPECTATIONS), "-v")
    assert code == 0, out
    assert "0 failed, 0 errors" in out
    assert out.count(": passed") == len(load_expectations(EXPECTATIONS).cases)


def test_cli_test_fails_on_a_weakened_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    weak = weakened_example(tmp_path)
    xml_path = tmp_path / "report.xml"
    code, out, _ = run_cli(monkeypatch, capsys, "test", str(EXPECTATIONS), "--config",
                           str(weak), "--junit-xml", str(xml_path))
    assert code == 1, out
    # Expected vs actual, the key's line, and the scope behind the actual value.
    assert 'case #2 "payroll partner: required TLS, host verified"' in out
    assert "verification           expected host, got optional" in out
    assert "outcome.name-mismatch  expected fail, got proceed" in out
    assert 'actual value from: domain "payroll-partner.example"' in out
    assert "fallback true from global" in out
    assert "outcome.handshake-failed  expected defer, got fallback" in out
    assert 'actual value from: binding_group "transactional"' in out
    lines = EXPECTATIONS.read_text("utf-8").splitlines()
    verification_line = next(i for i, text in enumerate(lines, 1)
                             if text.startswith('verification = "host"'))
    assert f"example-expectations.toml:{verification_line})" in out
    assert "FAILED" in out
    root = ET.parse(xml_path).getroot()
    assert root.tag == "testsuites"
    suite = root.find("testsuite")
    assert suite is not None
    failures = int(suite.get("failures", "0"))
    assert failures >= 3
    assert int(suite.get("tests", "0")) == len(load_expectations(EXPECTATIONS).cases)
    failed = [tc for tc in suite.iter("testcase") if tc.find("failure") is not None]
    assert len(failed) == failures
    first = failed[0].find("failure")
    assert first is not None and "expected" in (first.get("message") or "")
    assert "actual value from" in (first.text or "")


def test_cli_test_exit_2_on_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    unknown_binding = tmp_path / "e.toml"
    unknown_binding.write_text('[[case]]\nbinding = "nope"\ndomain = "a.example"\n'
                               'plan = "attempt"\n', "utf-8")
    code, out, _ = run_cli(monkeypatch, capsys, "test", str(unknown_binding))
    assert code == 2
    assert "unknown binding 'nope'" in out and "ERROR" in out
    bad = tmp_path / "bad.toml"
    bad.write_text('[[case]]\ndomain = "a.example"\nplann = "attempt"\n', "utf-8")
    code, out, _ = run_cli(monkeypatch, capsys, "test", str(bad), str(EXPECTATIONS),
                           "--junit-xml", str(tmp_path / "j.xml"))
    assert code == 2
    assert f"{bad}:3: case #1: option 'plann': unknown case key 'plann'" in out
    assert "did you mean 'plan'" in out
    suites = ET.parse(tmp_path / "j.xml").getroot().findall("testsuite")
    assert [s.get("errors") for s in suites] == ["1", "0"]
    broken_config = tmp_path / "broken.toml"
    broken_config.write_text('[global]\ntls = "requried"\n', "utf-8")
    code, out, _ = run_cli(monkeypatch, capsys, "test", str(EXPECTATIONS), "--config",
                           str(broken_config))
    assert code == 2
    assert "broken.toml:2" in out and "requried" in out


def test_config_precedence_explicit_then_file_then_bundled(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "strict.toml").write_text('[global]\ntls = "required"\n', "utf-8")
    (tmp_path / "plain.toml").write_text('[global]\ntls = "no"\n', "utf-8")
    own = tmp_path / "own.toml"
    own.write_text('config = "strict.toml"\n[[case]]\ndomain = "x.example"\n'
                   'tls = "required"\n', "utf-8")
    assert run_cli(monkeypatch, capsys, "test", str(own))[0] == 0
    code, out, _ = run_cli(monkeypatch, capsys, "test", str(own), "--config",
                           str(tmp_path / "plain.toml"))
    assert code == 1 and "expected required, got no" in out
    bundled = tmp_path / "bundled.toml"
    bundled.write_text('[[case]]\ndomain = "x.example"\ntls = "ifavailable"\n', "utf-8")
    code, out, _ = run_cli(monkeypatch, capsys, "test", str(bundled))
    assert code == 0 and "bundled example" in out


def test_layered_config_from_the_file(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text('[global]\ntls = "required"\ntls_verify = "ca"\n')
    (tmp_path / "b.toml").write_text('[global]\ntls_verify = "host"\n')
    path = tmp_path / "x.toml"
    path.write_text('config = ["a.toml", "b.toml"]\n[[case]]\ndomain = "x.example"\n'
                    'tls = "required"\ntls_verify = "host"\n')
    expectations = load_expectations(path)
    assert expectations.config == (str(tmp_path / "a.toml"), str(tmp_path / "b.toml"))


# ------------------------------------------------------------------ the format

def one_case(body: str, config: str = "") -> tuple[Resolver, str]:
    return Resolver(loads_toml(config)), "[[case]]\n" + body


def test_every_expected_part_is_checked() -> None:
    config = loads_toml('[global]\ntls = "ifavailable"\ntls_verify = "ca"\n'
                        'use_mta_sts = true\n[[domain]]\nname = "p.example"\ntls = "required"\n')
    text = """
[[case]]
name = "all keys"
domain = "P.Example."
mx_host = "mx.p.example"
overrides = { tls_ciphers = "HIGH" }
plan = "attempt"
tls = "required"
tls_verify = "ca"
verification = "ca"
fallback = true
requiretls = false
outcome.starttls-not-advertised = { action = "fail", code = 451, enhanced = "4.7.6", report = true }
outcome.tlsa-mismatch = "not-applicable"
source.tls = 'domain "p.example"'
source.tls_ciphers = "override"
decided_by.tls = "configuration"
effective.tls_ciphers = "HIGH"
effective.tls_protocols = "+ALL"
identities = ["p.example", "mx.p.example"]
sni = "mx.p.example"
"""
    case = loads_expectations(text).cases[0]
    assert case.tls is Tls.REQUIRED and case.tls_verify is TlsVerify.CA
    assert case.verification is Verification.CA and case.plan is Action.ATTEMPT
    result = run_case(Resolver(config), case)
    assert result.passed, format_failure(result)
    # Now flip every expectation: each one must be reported.
    wrong = (text.replace('plan = "attempt"', 'plan = "skip"')
             .replace('tls = "required"', 'tls = "ifavailable"')
             .replace('tls_verify = "ca"', 'tls_verify = "host"')
             .replace('verification = "ca"', 'verification = "host"')
             .replace("fallback = true", "fallback = false")
             .replace("requiretls = false", "requiretls = true")
             .replace('code = 451, enhanced = "4.7.6", report = true',
                      'code = 450, enhanced = "4.7.5", report = false')
             .replace('"not-applicable"', '"fail"')
             .replace("source.tls = 'domain \"p.example\"'", 'source.tls = "global"')
             .replace('source.tls_ciphers = "override"', 'source.tls_ciphers = "global"')
             .replace('decided_by.tls = "configuration"', 'decided_by.tls = "mta-sts (enforce)"')
             .replace('effective.tls_ciphers = "HIGH"', 'effective.tls_ciphers = "LOW"')
             .replace('effective.tls_protocols = "+ALL"', 'effective.tls_protocols = "TLSv1.3"')
             .replace('identities = ["p.example", "mx.p.example"]', 'identities = ["p.example"]')
             .replace('sni = "mx.p.example"', 'sni = "p.example"'))
    # plan "skip" with outcomes is impossible; test the plan separately.
    wrong_case = loads_expectations(wrong.replace('plan = "skip"\n', "")).cases[0]
    result = run_case(Resolver(config), wrong_case)
    keys = {m.key for m in result.mismatches}
    assert keys == {
        "tls", "tls_verify", "verification", "fallback", "requiretls",
        "outcome.starttls-not-advertised.code", "outcome.starttls-not-advertised.enhanced",
        "outcome.starttls-not-advertised.report", "outcome.tlsa-mismatch", "source.tls",
        "source.tls_ciphers", "decided_by.tls", "effective.tls_ciphers",
        "effective.tls_protocols", "identities", "sni",
    }
    plan_case = loads_expectations('[[case]]\ndomain = "p.example"\nplan = "skip"\n').cases[0]
    result = run_case(Resolver(config), plan_case)
    assert [m.key for m in result.mismatches] == ["plan"]
    assert result.mismatches[0].expected == "skip" and result.mismatches[0].actual == "attempt"


def test_destination_inputs_reach_the_resolver() -> None:
    text = """
[[case]]
domain = "d.example"
mx_host = "mx.d.example"
plan = "attempt"
tls = "required"
verification = "dane"
outcome.tlsa-mismatch = "fail"
decided_by.verification = "dane (usable TLSA records)"
  [case.inputs]
  tlsa_records = ["3 1 1 0000000000000000000000000000000000000000000000000000000000000000"]
  mta_sts = "version: STSv1\\nmode: testing\\nmx: *.d.example\\nmax_age: 600\\n"
  mta_sts_fetch = "fetch-error"
  mx_dnssec = true
"""
    case = loads_expectations(text).cases[0]
    assert case.destination is not None
    assert case.destination.tlsa is not None
    assert case.destination.tlsa.status is TlsaLookupStatus.RECORDS
    assert case.destination.mta_sts is not None
    assert case.destination.mta_sts.mode is StsMode.TESTING
    config = loads_toml('[global]\nuse_dane = true\nuse_mta_sts = true\n')
    result = run_case(Resolver(config), case)
    assert result.passed, format_failure(result)


def test_policy_input_refused_by_the_resolver_is_an_error_not_a_failure() -> None:
    # MTA-STS enforce without an MX host: the resolver fails closed.
    case = loads_expectations('[[case]]\ndomain = "d.example"\nplan = "attempt"\n'
                              'inputs.mta_sts = { mode = "enforce", mx = ["*.d.example"] }\n'
                              ).cases[0]
    result = run_case(Resolver(loads_toml('[global]\nuse_mta_sts = true\n')), case)
    assert result.status == "error"
    assert "mx_host is required" in (result.error or "")


def located(text: str, cls: type[ConfigError] = ExpectationError) -> list[ConfigError]:
    with pytest.raises(ConfigError) as info:
        loads_expectations(text, "exp.toml")
    errors = list(info.value.errors) if isinstance(info.value, ConfigErrors) else [info.value]
    for error in errors:
        assert isinstance(error, cls), error
        assert error.location.file == "exp.toml"
    return errors


BAD_CASES = [
    # (case body, error class, line of the error within the file, key, text in message)
    ('domain = "a.example"\nplann = "attempt"\n', UnknownExpectationKeyError, 3, "plann",
     "did you mean 'plan'"),
    ('domain = "a.example"\noutcome.handshake-fail = "fail"\n', ImpossibleExpectationError, 3,
     "outcome.handshake-fail", "unknown observation"),
    ('domain = "a.example"\noutcome.handshake-failed = "bounce"\n',
     ImpossibleExpectationError, 3, "outcome.handshake-failed", "unknown action"),
    ('domain = "a.example"\nplan = "proceed"\n', ImpossibleExpectationError, 3, "plan",
     "a plan is never 'proceed'"),
    ('domain = "a.example"\nplan = "fallback"\n', ImpossibleExpectationError, 3, "plan",
     "a plan is never 'fallback'"),
    ('domain = "a.example"\noutcome.name-mismatch = "fallback"\n', ImpossibleExpectationError,
     3, "outcome.name-mismatch", "never leads to 'fallback'"),
    ('domain = "a.example"\noutcome.starttls-not-advertised = "proceed"\n',
     ImpossibleExpectationError, 3, "outcome.starttls-not-advertised", "never leads to"),
    ('domain = "a.example"\nplan = "skip"\noutcome.handshake-failed = "defer"\n',
     ImpossibleExpectationError, 4, "outcome.handshake-failed", "has no outcomes"),
    ('domain = "a.example"\ntls = "no"\nplan = "attempt"\n', ImpossibleExpectationError, 4,
     "plan", "never plans 'attempt'"),
    ('domain = "a.example"\ntls = "no"\noutcome.handshake-failed = "fail"\n',
     ImpossibleExpectationError, 4, "outcome.handshake-failed", "never attempted"),
    ('domain = "a.example"\nplan = "attempt"\nplan_code = 451\n', ImpossibleExpectationError,
     4, "plan_code", "carries no status"),
    ('domain = "a.example"\ntls = "requried"\n', InvalidExpectationError, 3, "tls",
     "expected one of"),
    ('domain = "a.example"\nfallback = "yes"\n', InvalidExpectationError, 3, "fallback",
     "true or false"),
    ('domain = "a..example"\ntls = "no"\n', InvalidExpectationError, 2, "domain", "label"),
    ('tls = "no"\n', InvalidExpectationError, 1, "domain", "needs a 'domain'"),
    ('domain = "a.example"\n', ImpossibleExpectationError, 2, "domain", "expects nothing"),
    ('domain = "a.example"\ntls = "no"\nsource.tls_verfy = "global"\n',
     UnknownExpectationKeyError, 4, "source.tls_verfy", "unknown option"),
    ('domain = "a.example"\ntls = "no"\noverrides = { use_dane = false }\n',
     InvalidExpectationError, 4, "overrides.use_dane", "cannot be overridden"),
    ('domain = "a.example"\ntls = "no"\n[case.inputs]\nmta_sts_policy = "x"\n',
     UnknownExpectationKeyError, 5, "inputs.mta_sts_policy", "unknown destination-policy input"),
    ('domain = "a.example"\ntls = "no"\n[case.inputs]\nmta_sts = { mode = "strict" }\n',
     InvalidExpectationError, 5, "inputs.mta_sts.mode", "expected one of"),
    ('domain = "a.example"\ntls = "no"\ninputs.tlsa_records = ["3 1 1 zz"]\n',
     InvalidExpectationError, 4, "inputs.tlsa_records", "TLSA record #1"),
    ('domain = "a.example"\ntls = "no"\ninputs.tlsa_records = [1]\n',
     InvalidExpectationError, 4, "inputs.tlsa_records", "expected a string"),
    ('domain = "a.example"\noutcome.handshake-failed = { action = "fail", '
     'code = 451, why = 1 }\n', UnknownExpectationKeyError, 3,
     "outcome.handshake-failed.why", "unknown outcome key"),
    ('domain = "a.example"\noutcome.handshake-failed = { action = "fail", enhanced = "4.7" }\n',
     InvalidExpectationError, 3, "outcome.handshake-failed.enhanced", "enhanced status"),
    ('domain = "a.example"\ndecided_by.tls_verify = "dane"\n', UnknownExpectationKeyError, 3,
     "decided_by.tls_verify", "unknown decision field"),
    # An empty expectation table checks nothing: a mistake, even beside other expectations.
    ('domain = "a.example"\noutcome = {}\n', ImpossibleExpectationError, 3, "outcome",
     "expects nothing"),
    ('domain = "a.example"\ntls = "no"\n[case.source]\n', ImpossibleExpectationError, 4,
     "source", "expects nothing"),
    ('domain = "a.example"\ntls = "no"\ndecided_by = {}\n', ImpossibleExpectationError, 4,
     "decided_by", "expects nothing"),
    ('domain = "a.example"\ntls = "no"\n\n[case.effective]\n# none yet\n',
     ImpossibleExpectationError, 5, "effective", "expects nothing"),
    # Option names are case-insensitive: one option given twice is refused, as by
    # --override and by a configuration scope, never "the last one wins".
    ('domain = "a.example"\ntls = "no"\noverrides = { tls = "required", TLS = "no" }\n',
     InvalidExpectationError, 4, "overrides.TLS", "given twice"),
    ('domain = "a.example"\ntls = "no"\nsource = { tls = "global", TLS = "global" }\n',
     InvalidExpectationError, 4, "source.TLS", "given twice"),
    ('domain = "a.example"\ntls = "no"\n[case.effective]\ntls_verify = "no"\n'
     'Tls_Verify = "ca"\n', InvalidExpectationError, 6, "effective.Tls_Verify", "given twice"),
]


@pytest.mark.parametrize(("body", "cls", "line", "key", "message"), BAD_CASES)
def test_bad_case_is_a_located_error(body: str, cls: type[ConfigError], line: int, key: str,
                                     message: str) -> None:
    text = "# expectations\n[[case]]\n" + body
    errors = located(text, cls)
    assert len(errors) == 1, errors
    error = errors[0]
    assert error.location.line == line + 1, error
    assert error.location.option == key
    assert error.location.scope == "case #1"
    assert message in str(error)
    assert str(error).startswith(f"exp.toml:{line + 1}: case #1: option '{key}'")


def test_every_error_of_a_file_is_reported_at_once() -> None:
    text = ('[[case]]\nname = "first"\ndomain = "a.example"\nplan = "proceed"\n\n'
            '[[case]]\nname = "second"\ndomain = "b.example"\n'
            'outcome.name-mismatch = "skip"\nsource = { tls = 3 }\n')
    errors = located(text)
    assert [(e.location.line, e.location.scope, e.location.option) for e in errors] == [
        (4, 'case #1 "first"', "plan"),
        (9, 'case #2 "second"', "outcome.name-mismatch"),
        (10, 'case #2 "second"', "source.tls"),
    ]


def test_toml_nested_past_the_parsers_recursion_is_a_located_error() -> None:
    errors = located('x = ' + "[" * 5000 + "]" * 5000 + '\n[[case]]\ndomain = "a"\n')
    assert "nested too deeply" in str(errors[0]) and errors[0].location.file == "exp.toml"


def test_a_byte_order_mark_is_read_as_by_the_configuration_loader() -> None:
    expectations = loads_expectations('\ufeff[[case]]\ndomain = "a.example"\ntls = "no"\n'
                                      'plan = "skip"\n', "exp.toml")
    assert [case.domain for case in expectations.cases] == ["a.example"]
    errors = located('\ufeff[[case]]\ndomain = "a.example"\nplan = "go"\n')
    assert errors[0].location.line == 3


def test_lines_inside_multi_line_strings_and_odd_line_breaks_do_not_move_lines() -> None:
    # "[[case]]" at a line's start inside a multi-line string is no case, and U+0085 or
    # U+2028 in a comment is no line break (TOML breaks lines at "\n" only).
    text = ('[[case]]\nname = """\n[[case]]\n"""\ndomain = "a.example"\n'
            '# a\x85b\u2028c\nplan = "go"\n')
    errors = located(text)
    assert [(e.location.line, e.location.option) for e in errors] == [(7, "plan")]


def test_file_level_errors() -> None:
    errors = located('confg = "x.toml"\n[[case]]\ndomain = "a"\ntls = "no"\n')
    assert errors[0].location.line == 1 and "did you mean 'config'" in str(errors[0])
    errors = located("[case]\ndomain = 'a'\n")
    assert "array of tables" in str(errors[0])
    errors = located("# nothing\n")
    assert "no [[case]]" in str(errors[0])
    errors = located("[[case]\n")
    assert errors[0].location.line == 1 and "not valid TOML" in str(errors[0])
    errors = located('[[case]]\nname = "x"\ndomain = "a"\ntls = "no"\n'
                     '[[case]]\nname = "x"\ndomain = "b"\ntls = "no"\n')
    assert errors[0].location.line == 6 and "already used by case #1" in str(errors[0])
    errors = located('config = []\n[[case]]\ndomain = "a"\ntls = "no"\n')
    assert "'config' must be" in str(errors[0])


def test_inline_and_subtable_keys_get_their_lines() -> None:
    text = ('[[case]]\ndomain = "a.example"\noutcome = { handshake-failed = "bogus" }\n'
            '[[case]]\ndomain = "b.example"\n[case.outcome]\n'
            'certificate-expired = "fallback"\n')
    errors = located(text)
    assert [(e.location.line, e.location.option) for e in errors] == [
        (3, "outcome.handshake-failed"), (7, "outcome.certificate-expired")]


def test_possible_actions_follow_the_decision_tables() -> None:
    assert POSSIBLE_ACTIONS[Observation.STARTTLS_NOT_ADVERTISED] == {Action.SKIP, Action.FAIL}
    assert POSSIBLE_ACTIONS[Observation.HANDSHAKE_FAILED] == {
        Action.FALLBACK, Action.DEFER, Action.FAIL}
    for observation in (Observation.CHAIN_NOT_TRUSTED, Observation.NAME_MISMATCH,
                        Observation.CERTIFICATE_EXPIRED, Observation.TLSA_MISMATCH):
        assert Action.FALLBACK not in POSSIBLE_ACTIONS[observation]
    assert POSSIBLE_ACTIONS[Observation.REQUIRETLS_NOT_ADVERTISED] == {Action.FAIL}


def test_ecelerity_configuration_runs_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "ecelerity.conf"
    conf.write_text('TLS = "ifavailable"\nDomain "partner.example" {\n  TLS = "required"\n'
                    '  TLS_Verify = "host"\n}\n', "utf-8")
    exp = tmp_path / "e.toml"
    exp.write_text('config = "ecelerity.conf"\n[[case]]\ndomain = "partner.example"\n'
                   'tls = "required"\nverification = "host"\n'
                   "source.tls = 'domain \"partner.example\"'\n", "utf-8")
    code, out, _ = run_cli(monkeypatch, capsys, "test", str(exp))
    assert code == 0, out


# ------------------------------------------------------------------ the CI page

DOC = Path(__file__).resolve().parent.parent / "docs" / "testing-in-ci.md"


def doc_blocks(language: str) -> list[str]:
    import re

    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text("utf-8"), re.DOTALL)


@pytest.fixture
def doc_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The page's example repository, written out; the current directory is its root."""
    config, expectations = doc_blocks("toml")[:2]
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy" / "outbound.toml").write_text(config, "utf-8")
    (tmp_path / "policy" / "outbound.tlspolicy-test.toml").write_text(expectations, "utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_ci_page_example_passes_and_its_outputs_are_real(
        doc_repo: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    texts = doc_blocks("text")
    exp = "policy/outbound.tlspolicy-test.toml"
    code, out, _ = run_cli(monkeypatch, capsys, "test", exp)
    assert code == 0, out
    # The page's tree output.
    tree_block = next(t for t in texts if t.startswith("$ tlspolicy tree"))
    code, out, _ = run_cli(monkeypatch, capsys, "tree", "--config", "policy/outbound.toml")
    assert out == tree_block.split("\n", 1)[1]
    # Without the binding's domain stanza: the page's failure report and diff output.
    config = doc_repo / "policy" / "outbound.toml"
    original = config.read_text("utf-8")
    (doc_repo / "main-outbound.toml").write_text(original, "utf-8")
    config.write_text(original[: original.index("  # A binding's own value")], "utf-8")
    code, out, _ = run_cli(monkeypatch, capsys, "test", exp)
    assert code == 1
    failure_block = next(t for t in texts if t.startswith(exp))
    assert out == failure_block
    diff_block = next(t for t in texts if t.startswith("$ tlspolicy diff"))
    code, out, _ = run_cli(monkeypatch, capsys, *diff_block.split("\n", 1)[0].split()[2:])
    assert code == 1
    assert out == diff_block.split("\n", 1)[1]


def test_ci_page_error_example_is_real(doc_repo: Path) -> None:
    path = doc_repo / "policy" / "outbound.tlspolicy-test.toml"
    text = path.read_text("utf-8")
    path.write_text(text.replace('outcome.name-mismatch = "fail"',
                                 'outcome.name-mismatch = "fallback"'), "utf-8")
    with pytest.raises(ConfigError) as info:
        load_expectations("policy/outbound.tlspolicy-test.toml")
    block = next(t for t in doc_blocks("text") if "never leads to" in t)
    assert str(info.value) + "\n" == block


def test_ci_page_documents_every_key() -> None:
    from tlspolicy.policytests.expectations import CASE_KEYS, INPUT_KEYS

    text = DOC.read_text("utf-8")
    for key in (*CASE_KEYS, *INPUT_KEYS):
        assert f"`{key}" in text, key
    for observation in Observation:
        assert f"`{observation.value}`" in text
    assert "```mermaid\nstateDiagram-v2" in text


def test_cli_refuses_empty_expectation_tables_and_options_given_twice(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # These cases passed, checking nothing ("2 passed") or the last spelling only.
    path = tmp_path / "e.toml"
    path.write_text('[[case]]\nname = "empty outcome"\ndomain = "ordinary.example"\n'
                    'outcome = {}\n[[case]]\nname = "empty source"\n'
                    'domain = "ordinary.example"\n[case.source]\n'
                    '[[case]]\ndomain = "ordinary.example"\n'
                    'overrides = { tls = "required", TLS = "no" }\ntls = "no"\n', "utf-8")
    code, out, _ = run_cli(monkeypatch, capsys, "test", str(path))
    assert code == 2
    assert (f"{path}:4: case #1 \"empty outcome\": option 'outcome': an empty 'outcome' "
            "table expects nothing") in out
    assert f"{path}:8: case #2 \"empty source\": option 'source': an empty 'source'" in out
    assert (f"{path}:11: case #3: option 'overrides.TLS': option given twice (names are "
            "case-insensitive)") in out
    assert "passed" not in out


def test_junit_xml_parses_when_names_hold_control_characters(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # XML 1.0 cannot carry most control characters: they are written as visible
    # \uXXXX escapes, so the file parses and the name is still recognisable.
    path = tmp_path / "cc.toml"
    path.write_text('[[case]]\nname = "a\\u0001b"\ndomain = "ordinary.example"\ntls = "no"\n'
                    '[[case]]\nname = "c\\u001b[31md\\ufffe"\ndomain = "ordinary.example"\n'
                    'tls = "required"\n', "utf-8")
    xml = tmp_path / "j.xml"
    code, _, _ = run_cli(monkeypatch, capsys, "test", str(path), "--junit-xml", str(xml))
    assert code == 1
    cases = ET.parse(xml).getroot().findall("testsuite/testcase")
    assert [c.get("name") for c in cases] == ["a\\u0001b", "c\\u001b[31md\\ufffe"]
    failure = cases[1].find("failure")
    assert failure is not None and '"c\\u001b[31md\\ufffe"' in (failure.text or "")
    # Tabs and line breaks are legal and kept.
    assert "\n" in (failure.text or "")
