"""Run expectation cases against a configuration and report the results.

:func:`run_case` resolves one case and compares every expected part with the
decision; :func:`format_failure` renders a failed case with expected and
actual values and the scope (or destination policy) each actual value came
from, so an operator sees at once which stanza to look at.
:func:`junit_xml` writes the results for CI systems.
"""

from __future__ import annotations

import enum
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final

import attrs

from ..decision import Decision
from ..errors import ConfigError, ConfigErrors, Location, TlsPolicyError
from ..options import UNSET
from ..outcomes import Observation
from ..resolver import Resolver
from ..scopes import Config
from .expectations import NOT_APPLICABLE, Case, ExpectationFile, ExpectedOutcome

__all__ = [
    "CaseResult",
    "Mismatch",
    "config_errors",
    "config_for",
    "format_failure",
    "format_report",
    "junit_xml",
    "run_case",
    "run_file",
]


@attrs.frozen(slots=True)
class Mismatch:
    """One expected value the decision did not meet.

    ``key`` is the key path in the expectation file (``outcome.handshake-failed``),
    ``source`` says where the actual value came from (scope paths or policy).
    """

    key: str
    expected: str
    actual: str
    source: str | None
    line: int | None


@attrs.frozen(slots=True)
class CaseResult:
    """The result of one case: mismatches, or an error that stopped it.

    ``decision`` is ``None`` when resolving raised (``error`` says why: an
    unknown binding, a destination input the resolver refused...).
    """

    case: Case
    mismatches: tuple[Mismatch, ...] = ()
    error: str | None = None
    decision: Decision | None = attrs.field(default=None, eq=False, repr=False)

    @property
    def passed(self) -> bool:
        """True when the case ran and every expectation held."""
        return self.error is None and not self.mismatches

    @property
    def status(self) -> str:
        """``passed``, ``failed`` or ``error``."""
        if self.error is not None:
            return "error"
        return "failed" if self.mismatches else "passed"


def _show(value: object) -> str:
    if value is None:
        return NOT_APPLICABLE
    if value is UNSET:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, (tuple, list)):
        return ", ".join(str(v) for v in value)
    return str(value)


class _Check:
    """Collects mismatches for one case against one decision."""

    def __init__(self, case: Case, decision: Decision) -> None:
        self.case = case
        self.decision = decision
        self.found: list[Mismatch] = []

    def source(self, field: str, option: str) -> str:
        decided = self.decision.decided_by.get(field)
        if decided is not None:
            return f"{decided} (destination policy)"
        return str(self.decision.explanation[option])

    def compare(self, key: str, expected: object, actual: object,
                source: str | None, equal: Callable[[object, object], bool] | None = None
                ) -> None:
        same = equal(expected, actual) if equal is not None else expected == actual
        if not same:
            self.found.append(Mismatch(key, _show(expected), _show(actual), source,
                                       self.case.line_of(key)))

    def behind_outcomes(self) -> str:
        d = self.decision
        parts = [f"tls {d.tls.value} from {self.source('tls', 'tls')}"]
        if d.tls.value != "no":
            parts.append(f"verification {d.verification.value} from "
                         f"{self.source('verification', 'tls_verify')}")
            parts.append(f"fallback {_show(d.fallback)} from "
                         f"{self.fallback_source()}")
        return "; ".join(parts)

    def fallback_source(self) -> str:
        d = self.decision
        text = self.source("fallback", "tls_ifavailable_fallback")
        if "fallback" not in d.decided_by and d.effective["tls_ifavailable_fallback"] \
                and not d.fallback:
            text += " (no fallback under the pinned compatibility version)"
        return text

    def run(self) -> tuple[Mismatch, ...]:
        c, d = self.case, self.decision
        plan_source = (str(d.decided_by["plan"]) + " (destination policy)"
                       if "plan" in d.decided_by else self.behind_outcomes())
        if c.plan is not None:
            self.compare("plan", c.plan, d.plan, plan_source)
        if c.plan_code is not None:
            self.compare("plan_code", c.plan_code,
                         d.plan_status.code if d.plan_status else None, plan_source)
        if c.plan_enhanced is not None:
            self.compare("plan_enhanced", c.plan_enhanced,
                         d.plan_status.enhanced if d.plan_status else None, plan_source)
        if c.tls is not None:
            self.compare("tls", c.tls, d.tls, self.source("tls", "tls"))
        if c.tls_verify is not None:
            self.compare("tls_verify", c.tls_verify, d.effective["tls_verify"],
                         str(d.explanation["tls_verify"]))
        if c.verification is not None:
            self.compare("verification", c.verification, d.verification,
                         self.source("verification", "tls_verify"))
        if c.fallback is not None:
            self.compare("fallback", c.fallback, d.fallback, self.fallback_source())
        if c.requiretls is not None:
            self.compare("requiretls", c.requiretls, d.requiretls, "inputs.requiretls")
        for expected in c.outcomes:
            self.outcome(expected.observation, expected)
        for option, scope in c.sources:
            self.compare(f"source.{option}", scope, str(d.explanation[option]), None)
        for field, text in c.decided_by:
            got = d.decided_by.get(field)
            self.compare(f"decided_by.{field}", text,
                         str(got) if got is not None else "configuration", None)
        for option, value in c.effective:
            self.compare(f"effective.{option}", value, d.effective[option],
                         str(d.explanation[option]),
                         equal=lambda a, b: a == b and type(a) is type(b))
        if c.identities is not None:
            self.compare("identities", c.identities, d.reference_identities,
                         str(d.decided_by.get("identities", "the domain and the MX host")))
        if c.sni is not None:
            self.compare("sni", c.sni, d.parameters.sni,
                         "destination policy" if "identities" in d.decided_by
                         else "the MX host, else the domain")
        return tuple(self.found)

    def outcome(self, observation: Observation, expected: ExpectedOutcome) -> None:
        key = f"outcome.{observation.value}"
        got = self.decision.outcomes.get(observation)
        source = self.behind_outcomes()
        self.compare(key, expected.action, got.action if got else None, source)
        if got is None or expected.action is None or got.action is not expected.action:
            return
        if expected.code is not None:
            self.compare(f"{key}.code", expected.code, got.status.code if got.status else None,
                         source)
        if expected.enhanced is not None:
            self.compare(f"{key}.enhanced", expected.enhanced,
                         got.status.enhanced if got.status else None, source)
        if expected.report is not None:
            self.compare(f"{key}.report", expected.report, got.report, source)


def run_case(resolver: Resolver, case: Case) -> CaseResult:
    """Resolve ``case`` with ``resolver`` and compare every expected part."""
    try:
        decision = resolver.resolve(case.domain, case.binding, mx_host=case.mx_host,
                                    overrides=case.overrides, destination=case.destination)
    except TlsPolicyError as exc:
        return CaseResult(case, error=f"{type(exc).__name__}: {exc}")
    return CaseResult(case, _Check(case, decision).run(), None, decision)


def run_file(expectations: ExpectationFile, config: Config) -> list[CaseResult]:
    """Run every case of an expectation file against ``config``."""
    resolver = Resolver(config)
    return [run_case(resolver, case) for case in expectations.cases]


def config_for(expectations: ExpectationFile, explicit: Sequence[str] | None,
               load: Callable[[tuple[str, ...]], Config]) -> tuple[Config, str]:
    """The configuration an expectation file runs against, and a description of it.

    Precedence: the explicitly given files (``--config``, the pytest ini
    option), else the file's own ``config`` key, else the bundled example
    (``load(())``).
    """
    paths = tuple(explicit) if explicit else expectations.config
    described = ", ".join(paths) if paths else "the bundled example configuration"
    return load(paths), described


def config_errors(expectations: ExpectationFile, error: ConfigError,
                  explicit: Sequence[str] | None = None) -> list[str]:
    """The messages of ``error``, raised loading the configuration ``expectations``
    runs against: when the file's own ``config`` key named it (no ``explicit`` files),
    each is said at that key, since the configuration's error (a directory, a missing
    file) names no expectation file."""
    found = error.errors if isinstance(error, ConfigErrors) else (error,)
    if explicit or not expectations.config:
        return [str(e) for e in found]
    where = Location(file=expectations.path, line=expectations.config_line,
                     option="config").describe()
    return [f"{where}: {e}" for e in found]


def _where(case: Case, line: int | None = None) -> str:
    at = line if line is not None else case.line
    return f"{case.file}:{at}" if at is not None else case.file


def format_failure(result: CaseResult) -> str:
    """A readable report of one failed (or erroring) case."""
    case = result.case
    lines = [f"{case.label} at {_where(case)}: {result.status.upper()}",
             f"  request: {case.request()}"]
    if result.error is not None:
        lines.append(f"  error: {result.error}")
        return "\n".join(lines)
    width = max(len(m.key) for m in result.mismatches) if result.mismatches else 0
    for m in result.mismatches:
        lines.append(f"  {m.key:<{width}}  expected {m.expected}, got {m.actual}"
                     f"   ({_where(case, m.line)})")
        if m.source:
            lines.append(f"  {'':<{width}}  actual value from: {m.source}")
    return "\n".join(lines)


def format_report(results: Iterable[CaseResult], *, verbose: bool = False) -> str:
    """Failures in full, passing cases as one line each when ``verbose``, and a summary."""
    items = list(results)
    out: list[str] = []
    for result in items:
        if not result.passed:
            out.append(format_failure(result))
            out.append("")
        elif verbose:
            out.append(f"{result.case.label} at {_where(result.case)}: passed")
    counts = {s: sum(1 for r in items if r.status == s) for s in ("passed", "failed", "error")}
    out.append(f"{counts['passed']} passed, {counts['failed']} failed, "
               f"{counts['error']} error{'s' if counts['error'] != 1 else ''}")
    return "\n".join(out)


def junit_xml(suites: Mapping[str, Sequence[CaseResult]],
              path: str | os.PathLike[str]) -> None:
    """Write JUnit XML: one ``testsuite`` per expectation file, one ``testcase`` per case.

    ``suites`` maps a suite name (the expectation file) to its results; a file
    that could not be loaded can be given as a single result with ``error``.
    """
    root = ET.Element("testsuites", name="tlspolicy")
    total = {"tests": 0, "failures": 0, "errors": 0}
    for name, results in suites.items():
        failures = sum(1 for r in results if r.status == "failed")
        errors = sum(1 for r in results if r.status == "error")
        suite = ET.SubElement(root, "testsuite", name=name, tests=str(len(results)),
                              failures=str(failures), errors=str(errors), skipped="0")
        total["tests"] += len(results)
        total["failures"] += failures
        total["errors"] += errors
        for r in results:
            attrs_ = {"classname": _classname(name), "name": r.case.name, "file": r.case.file}
            if r.case.line is not None:
                attrs_["line"] = str(r.case.line)
            element = ET.SubElement(suite, "testcase", attrs_)
            if r.status == "failed":
                first = r.mismatches[0]
                failure = ET.SubElement(element, "failure", message=(
                    f"{first.key}: expected {first.expected}, got {first.actual}"
                    + (f" (+{len(r.mismatches) - 1} more)" if len(r.mismatches) > 1 else "")))
                failure.text = format_failure(r)
            elif r.status == "error":
                error = ET.SubElement(element, "error", message=r.error or "error")
                error.text = format_failure(r)
    for key, value in total.items():
        root.set(key, str(value))
    for node in root.iter():
        node.text = _xml_text(node.text)
        for name, text in node.attrib.items():
            node.set(name, _xml_text(text) or "")
    ET.indent(root)
    ET.ElementTree(root).write(os.fspath(path), encoding="utf-8", xml_declaration=True)


_SUFFIXES: Final = (".tlspolicy-test.toml", ".toml")
# What XML 1.0 cannot carry (its Char production): most C0 controls, lone surrogates
# (a file name's undecodable bytes), U+FFFE and U+FFFF.  One character at a time.
_NOT_XML: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(text: str | None) -> str | None:
    """``text`` with each character XML cannot hold written as a visible ``\\uXXXX``
    escape (a case name with U+0001 would otherwise make the whole file unreadable)."""
    if text is None:
        return None
    return _NOT_XML.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _classname(name: str) -> str:
    base = os.path.basename(name)
    for suffix in _SUFFIXES:
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    return "tlspolicy." + base.replace(".", "_")

