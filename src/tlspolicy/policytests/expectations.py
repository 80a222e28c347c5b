"""Expectation files: what an operator expects the policy to decide.

An expectation file is TOML: an optional ``config`` (configuration files,
relative to the expectation file, layered in order) and a list of cases::

    config = ["outbound.toml"]          # optional

    [[case]]
    name = "payroll partner, US pool"   # optional; default "case #N"
    binding = "tx-us-1"                 # optional; default: the default binding
    domain = "payroll-partner.example"
    mx_host = "mx1.payroll-partner.example"     # optional
    overrides = { tls = "required" }            # optional per-message overrides
    plan = "attempt"                    # skip | attempt | fail | defer
    tls = "required"                    # the decision's tls (after destination policy)
    tls_verify = "host"                 # the configured (effective) tls_verify
    verification = "host"               # the decision's verification (no/optional/ca/host/dane)
    fallback = false
    outcome.handshake-failed = "fail"
    outcome.name-mismatch = { action = "fail", code = 451, enhanced = "4.7.5" }
    source.tls = 'binding_group "transactional" > domain "payroll-partner.example"'

      [case.inputs]                     # destination-policy inputs (all optional)
      mta_sts = { mode = "enforce", mx = ["*.payroll-partner.example"], max_age = 86400 }
      tlsa = "nodata"

Every key of a case is listed in :data:`CASE_KEYS`.  An unknown key, a value
of the wrong type and an expectation no decision can meet (an observation that
does not exist, an action an observation can never have, a plan of
``proceed``) are :class:`ExpectationError` values located at the file, line,
case and key, and all of a file's problems are reported together.

This module holds the models and the keys; :mod:`.reader` reads the files.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import attrs

from ..errors import (
    ConfigError,
    ConfigSyntaxError,
    InvalidValueError,
    UnknownOptionError,
)
from ..options import Options, Tls, TlsVerify
from ..outcomes import (
    CERTIFICATE_OBSERVATIONS,
    NEGOTIATION_OBSERVATIONS,
    Action,
    Observation,
    Verification,
    certificate_outcome,
    negotiation_outcome,
)
from ..policies.destination import Destination

__all__ = [
    "CASE_KEYS",
    "DECIDED_BY_KEYS",
    "DEFAULT_PATTERN",
    "INPUT_KEYS",
    "NOT_APPLICABLE",
    "Case",
    "ExpectationError",
    "ExpectationFile",
    "ExpectationSyntaxError",
    "ExpectedOutcome",
    "ImpossibleExpectationError",
    "InvalidExpectationError",
    "UnknownExpectationKeyError",
]

DEFAULT_PATTERN: Final = "*.tlspolicy-test.toml"
"""File name pattern the pytest plugin collects without any configuration."""

NOT_APPLICABLE: Final = "not-applicable"
"""Outcome value meaning "this observation cannot arise under the decision"."""

CASE_KEYS: Final[Mapping[str, str]] = {
    "name": "a name for reports (default 'case #N'); unique in the file",
    "binding": "binding the mail is assigned to (default: the default binding)",
    "domain": "recipient domain or IP literal (required)",
    "mx_host": "MX host name connected to",
    "overrides": "per-message overrides: a table of option = value",
    "inputs": "destination-policy inputs: a table (see INPUT_KEYS)",
    "plan": "expected plan: skip, attempt, fail or defer",
    "plan_code": "expected reply code of a failing plan, e.g. 451",
    "plan_enhanced": "expected enhanced status code of a failing plan, e.g. '4.7.5'",
    "tls": "expected tls of the decision: no, ifavailable, required",
    "tls_verify": "expected effective (configured) tls_verify: no, optional, ca, host",
    "verification": "expected verification of the decision: no, optional, ca, host, dane",
    "fallback": "expected fallback of the decision (true/false)",
    "requiretls": "expected REQUIRETLS flag of the decision (true/false)",
    "outcome": "expected outcome per observation: a table observation = action or "
               "{ action, code, enhanced, report }",
    "source": "expected scope that supplied an option: a table option = scope path",
    "decided_by": "expected destination policy that decided a field: a table "
                  "(tls, verification, fallback, identities, plan) = source",
    "effective": "expected effective value of any option: a table option = value",
    "identities": "expected reference identities (a list of names)",
    "sni": "expected SNI name",
}
"""Every key a ``[[case]]`` table may hold, with what it means."""


INPUT_KEYS: Final[Mapping[str, str]] = {
    "mta_sts": "the MTA-STS policy in force: { mode, mx = [...], max_age } or the "
               "policy document text",
    "mta_sts_fetch": "outcome of the latest policy fetch: ok, fetch-error, invalid, "
                     "webpki-invalid",
    "tlsa": "TLSA lookup status for the MX host: insecure, records, nodata, nxdomain, "
            "failed, bogus",
    "tlsa_records": "TLSA records as 'usage selector matching-type hex' strings "
                    "(implies tlsa = 'records')",
    "tlsa_base_domain": "the TLSA base domain, when not the MX host name",
    "mx_dnssec": "the MX record came from a DNSSEC-validated lookup (true/false)",
    "requiretls": "the message carries the REQUIRETLS MAIL FROM parameter (true/false)",
    "tls_required_no": "the message has a 'TLS-Required: No' header field (true/false)",
    "tls_broken": "TLS to this host was remembered broken recently (true/false)",
}
"""Every key of a case's ``inputs`` table (the resolver's ``Destination``)."""


DECIDED_BY_KEYS: Final = ("tls", "verification", "fallback", "identities", "plan")


def _possible_actions() -> dict[Observation, frozenset[Action]]:
    # Derived from the decision tables themselves, so an expectation is called
    # impossible exactly when no configuration could produce it.
    possible: dict[Observation, set[Action]] = {o: set() for o in Observation}
    for observation in NEGOTIATION_OBSERVATIONS:
        for tls in Tls:
            for fallback in (True, False):
                out = negotiation_outcome(tls, observation, fallback=fallback)
                if out is not None:
                    possible[observation].add(out.action)
    for observation in CERTIFICATE_OBSERVATIONS:
        for verification in Verification:
            checked = certificate_outcome(verification, observation)
            if checked is not None:
                possible[observation].add(checked.action)
    possible[Observation.REQUIRETLS_NOT_ADVERTISED].add(Action.FAIL)
    return {o: frozenset(a) for o, a in possible.items()}


POSSIBLE_ACTIONS: Final = _possible_actions()
"""The actions each observation can ever lead to (from the SEMANTICS section 4 tables)."""


class ExpectationError(ConfigError):
    """A problem in an expectation file, located at file, line, case and key."""


class ExpectationSyntaxError(ExpectationError, ConfigSyntaxError):
    """The expectation file is not valid TOML, not readable, or laid out wrongly."""


class UnknownExpectationKeyError(ExpectationError, UnknownOptionError):
    """A key an expectation file may not hold (a typo must not silently test nothing)."""


class InvalidExpectationError(ExpectationError, InvalidValueError):
    """A value of the wrong type or outside its set."""


class ImpossibleExpectationError(ExpectationError, InvalidValueError):
    """An expectation no decision can ever meet (e.g. plan ``proceed``)."""


@attrs.frozen(slots=True)
class ExpectedOutcome:
    """The expected outcome for one observation; ``action`` ``None`` means not applicable."""

    observation: Observation
    action: Action | None
    code: int | None = None
    enhanced: str | None = None
    report: bool | None = None


@attrs.frozen(slots=True)
class Case:
    """One expectation: a delivery request and the decision parts it must produce.

    Expected fields left ``None`` (or empty) are not checked.  ``lines`` maps
    each key path written in the file (``"outcome.handshake-failed"``) to its
    line, for reports.
    """

    file: str
    index: int
    name: str
    line: int | None
    domain: str
    binding: str | None = None
    mx_host: str | None = None
    overrides: Options | None = None
    destination: Destination | None = None
    plan: Action | None = None
    plan_code: int | None = None
    plan_enhanced: str | None = None
    tls: Tls | None = None
    tls_verify: TlsVerify | None = None
    verification: Verification | None = None
    fallback: bool | None = None
    requiretls: bool | None = None
    outcomes: tuple[ExpectedOutcome, ...] = ()
    sources: tuple[tuple[str, str], ...] = ()
    decided_by: tuple[tuple[str, str], ...] = ()
    effective: tuple[tuple[str, object], ...] = ()
    identities: tuple[str, ...] | None = None
    sni: str | None = None
    lines: Mapping[str, int] = attrs.field(factory=dict, eq=False, repr=False)

    @property
    def label(self) -> str:
        """``case #3 "name"`` (or ``case #3`` when unnamed), as reports show it."""
        default = f"case #{self.index}"
        return default if self.name == default else f'{default} "{self.name}"'

    def line_of(self, key: str) -> int | None:
        """The line of ``key`` (a dotted key path) in the file, else the case's line."""
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key.rpartition(".")[0]
        return self.line

    def request(self) -> str:
        """The request in one line: ``binding "b" -> domain (MX mx)``."""
        text = f'binding "{self.binding or "default"}" -> {self.domain}'
        if self.mx_host:
            text += f" (MX {self.mx_host})"
        if self.overrides is not None:
            text += " with overrides " + ", ".join(
                f"{k}={v}" for k, v in self.overrides.to_mapping().items())
        if self.destination is not None:
            text += " with destination inputs"
        return text


@attrs.frozen(slots=True)
class ExpectationFile:
    """A parsed expectation file: its configuration files (absolute) and its cases."""

    path: str
    config: tuple[str, ...]
    cases: tuple[Case, ...]
    #: The line of the ``config`` key, for errors of the configuration it names.
    config_line: int | None = None
