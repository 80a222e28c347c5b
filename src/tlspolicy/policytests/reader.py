"""Reading expectation files (:mod:`.expectations` describes them): TOML into
:class:`~tlspolicy.policytests.expectations.ExpectationFile`, every problem located at
file, line, case and key, and all of a file's problems reported together.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, TypeVar

from ..errors import (
    ConfigError,
    ConfigErrors,
    ConfigSyntaxError,
    FileReadError,
    Location,
    PolicyInputError,
)
from ..formats.files import read_regular_text
from ..formats.toml import parse_toml
from ..formats.toml_lines import MAX_LOCATED_PARTS, code_lines
from ..names import normalise_domain
from ..options import Options, OptionSpec, Tls, TlsVerify, option_spec
from ..outcomes import Action, Observation, Verification
from ..policies.dane import TlsaLookup, TlsaLookupStatus, TlsaRecord
from ..policies.destination import Destination
from ..policies.mtasts import (
    FetchOutcome,
    MtaStsPolicy,
    MtaStsPolicyError,
    StsMode,
    parse_policy,
)
from ..resolver import OVERRIDABLE_OPTIONS
from .expectations import (
    CASE_KEYS,
    DECIDED_BY_KEYS,
    INPUT_KEYS,
    NOT_APPLICABLE,
    POSSIBLE_ACTIONS,
    Case,
    ExpectationError,
    ExpectationFile,
    ExpectationSyntaxError,
    ExpectedOutcome,
    ImpossibleExpectationError,
    InvalidExpectationError,
    UnknownExpectationKeyError,
)

__all__ = ["load_expectations", "loads_expectations"]

_FILE_KEYS: Final = ("config", "case")
_OUTCOME_KEYS: Final = ("action", "code", "enhanced", "report")
_PLAN_ACTIONS: Final = (Action.SKIP, Action.ATTEMPT, Action.FAIL, Action.DEFER)
_ENHANCED: Final = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")
_REQUEST_KEYS: Final = frozenset({"name", "binding", "domain", "mx_host", "overrides", "inputs"})
_V = TypeVar("_V")


def _policy_message(what: str, exc: Exception) -> str:
    """``what, line 3: message``: said once, not as ``what: MTA-STS policy: line 3``."""
    if isinstance(exc, MtaStsPolicyError):
        where = [what]
        if exc.line is not None:
            where.append(f"line {exc.line}")
        if exc.key is not None:
            where.append(f"key {exc.key!r}")
        return f"{', '.join(where)}: {exc.message}"
    return f"{what}: {exc}"

# ---------------------------------------------------------------- line numbers

# Linear: each part's characters exclude the next part's first character, so the
# engine never tries more than one split of a line (the spaces around the name are
# kept in group 2 and stripped by the caller).
_HEADER: Final = re.compile(r"^\s*(\[\[?)([^\[\]#]*)(\]\]?)\s*(?:#.*)?$")
_KEY_PART: Final = r"""(?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+)"""
_KEY_PARTS: Final = re.compile(_KEY_PART)
_DOTTED_KEY: Final = re.compile(rf"^\s*({_KEY_PART}(?:\s*\.\s*{_KEY_PART})*)\s*=")


def _split_key(text: str) -> list[str]:
    return [p.strip().strip("\"'") for p in _KEY_PARTS.findall(text)]


class _Lines:
    """Line numbers of case tables and key paths, found by scanning the text.

    The TOML parser keeps no positions, so headers are replayed as in the
    configuration reader: the n-th ``[[case]]`` starts case n, and a
    ``[case.inputs]`` header or a dotted key ``outcome.handshake-failed``
    inside it extends the path.  Keys inside inline tables share the line of
    the table's key.
    """

    def __init__(self, text: str) -> None:
        self.cases: list[int] = []
        # Key paths by case (None: outside every case), indexed once while scanning:
        # looking a case's keys up among all the file's keys cost the square of the
        # number of cases.
        self.keys: dict[int | None, dict[str, int]] = {}
        case: int | None = None
        prefix: list[str] = []
        for number, line in code_lines(text):
            header = _HEADER.match(line)
            if header:
                names = _split_key(header.group(2))
                if len(names) > MAX_LOCATED_PARTS:
                    # No expectation nests so deep; locating each of its keys would
                    # cost the square of the parts.  What is under it is not located.
                    case, prefix = None, [header.group(2)]
                elif header.group(1) == "[[" and names == ["case"]:
                    self.cases.append(number)
                    case = len(self.cases) - 1
                    prefix = []
                elif names and names[0] == "case" and case is not None:
                    prefix = names[1:]
                    self.keys.setdefault(case, {}).setdefault(".".join(prefix), number)
                else:
                    case, prefix = None, names
                continue
            key = _DOTTED_KEY.match(line)
            if key:
                path = [*prefix, *_split_key(key.group(1))]
                # Each prefix of the path is a key of its own: past MAX_LOCATED_PARTS
                # parts not located, as a line's thousands of parts would cost the
                # square of their number.
                keys = self.keys.setdefault(case, {})
                for depth in range(1, min(len(path), MAX_LOCATED_PARTS) + 1):
                    keys.setdefault(".".join(path[:depth]), number)

    def case_line(self, index: int) -> int | None:
        return self.cases[index] if index < len(self.cases) else None

    def case_keys(self, index: int) -> dict[str, int]:
        """The lines of case ``index``'s key paths (its own dictionary: not to be changed)."""
        return self.keys.get(index, {})

    def top(self, key: str) -> int | None:
        return self.keys.get(None, {}).get(key)


# ---------------------------------------------------------------- reading



class _CaseReader:
    """Reads one ``[[case]]`` table, collecting every error it finds."""

    def __init__(self, filename: str, index: int, table: Mapping[str, Any],
                 lines: dict[str, int], case_line: int | None,
                 errors: list[ConfigError]) -> None:
        self.filename = filename
        self.index = index
        self.table = table
        self.lines = lines
        self.case_line = case_line
        self.errors = errors
        name = table.get("name")
        self.scope = f"case #{index}" + (f' "{name}"' if isinstance(name, str) else "")

    def loc(self, key: str) -> Location:
        probe = key
        line: int | None = None
        while probe and line is None:
            line = self.lines.get(probe)
            probe = probe.rpartition(".")[0]
        return Location(file=self.filename, line=line if line is not None else self.case_line,
                        scope=self.scope, option=key)

    def fail(self, cls: type[ExpectationError], message: str, key: str,
             value: object = None, has_value: bool = False) -> None:
        self.errors.append(cls(message, self.loc(key), value=value, has_value=has_value))

    def text(self, key: str, value: object) -> str | None:
        if isinstance(value, str) and value.strip():
            return value
        self.fail(InvalidExpectationError, "expected a non-empty string", key, value, True)
        return None

    def boolean(self, key: str, value: object) -> bool | None:
        if isinstance(value, bool):
            return value
        self.fail(InvalidExpectationError, "expected true or false", key, value, True)
        return None

    def choice(self, key: str, value: object, members: Sequence[Any]) -> Any:
        for member in members:
            if value == member.value:
                return member
        allowed = ", ".join(repr(m.value) for m in members)
        self.fail(InvalidExpectationError, f"expected one of {allowed}", key, value, True)
        return None

    def table_of(self, key: str, value: object) -> Mapping[str, Any] | None:
        if isinstance(value, dict):
            return value
        self.fail(InvalidExpectationError, "expected a table", key, value, True)
        return None

    def expectations_of(self, key: str, value: object, what: str) -> Mapping[str, Any] | None:
        """``value`` as a table of expectations: an empty one checks nothing, which is
        a mistake (a case that passes without checking what its author meant to), so it
        is an error even beside other expectations.  ``what`` says what to put in it."""
        table = self.table_of(key, value)
        if table is not None and not table:
            self.fail(ImpossibleExpectationError,
                      f"an empty {key!r} table expects nothing: name at least one {what} "
                      f"in it, or leave {key!r} out", key)
            return None
        return table

    def twice(self, seen: dict[str, str], name: str, spelling: str, key: str) -> bool:
        """Whether option ``name`` (written ``spelling``) was already given in this table,
        reported as ``--override`` and a configuration scope report it."""
        if name in seen:
            self.fail(InvalidExpectationError,
                      f"option given twice (names are case-insensitive): {seen[name]!r} and "
                      f"{spelling!r} both name {name!r}", key)
            return True
        seen[name] = spelling
        return False

    def read(self) -> Case | None:
        before = len(self.errors)
        t = self.table
        unknown = [key for key in t if key not in CASE_KEYS]
        for key in unknown:
            if key not in CASE_KEYS:
                close = _close_match(key, CASE_KEYS)
                self.fail(UnknownExpectationKeyError, f"unknown case key {key!r}{close}", key)
        name = f"case #{self.index}"
        if "name" in t:
            name = self.text("name", t["name"]) or name
        domain: str | None = None
        if "domain" not in t:
            self.fail(InvalidExpectationError, "a case needs a 'domain'", "domain")
        else:
            domain = self.text("domain", t["domain"])
            if domain is not None:
                try:
                    normalise_domain(domain)
                except ValueError as exc:
                    self.fail(InvalidExpectationError, str(exc), "domain", domain, True)
        binding = self.text("binding", t["binding"]) if "binding" in t else None
        mx_host = self.text("mx_host", t["mx_host"]) if "mx_host" in t else None
        if mx_host is not None:
            try:
                normalise_domain(mx_host)
            except ValueError as exc:
                self.fail(InvalidExpectationError, str(exc), "mx_host", mx_host, True)
        overrides = self.overrides(t["overrides"]) if "overrides" in t else None
        destination = self.inputs(t["inputs"]) if "inputs" in t else None
        # A misspelt expectation is already reported; "expects nothing" would be noise.
        if not unknown and not any(k in t for k in CASE_KEYS if k not in _REQUEST_KEYS):
            self.fail(ImpossibleExpectationError,
                      "the case expects nothing; add at least one expected value "
                      f"({', '.join(k for k in CASE_KEYS if k not in _REQUEST_KEYS)})",
                      "name" if "name" in t else "domain")
        plan = None
        if "plan" in t:
            if t["plan"] in (Action.PROCEED.value, Action.FALLBACK.value):
                self.fail(ImpossibleExpectationError,
                          f"a plan is never {t['plan']!r}: before connecting the plan is skip, "
                          "attempt, fail or defer; expect proceed/fallback under 'outcome'",
                          "plan", t["plan"], True)
            else:
                plan = self.choice("plan", t["plan"], _PLAN_ACTIONS)
        plan_code = self.code("plan_code", t["plan_code"]) if "plan_code" in t else None
        plan_enhanced = (self.enhanced("plan_enhanced", t["plan_enhanced"])
                         if "plan_enhanced" in t else None)
        if plan in (Action.SKIP, Action.ATTEMPT) and ("plan_code" in t or "plan_enhanced" in t):
            self.fail(ImpossibleExpectationError,
                      f"a plan of {plan.value!r} carries no status",
                      "plan_code" if "plan_code" in t else "plan_enhanced")
        tls = self.choice("tls", t["tls"], list(Tls)) if "tls" in t else None
        tls_verify = (self.choice("tls_verify", t["tls_verify"], list(TlsVerify))
                      if "tls_verify" in t else None)
        verification = (self.choice("verification", t["verification"], list(Verification))
                        if "verification" in t else None)
        fallback = self.boolean("fallback", t["fallback"]) if "fallback" in t else None
        requiretls = self.boolean("requiretls", t["requiretls"]) if "requiretls" in t else None
        if tls is Tls.NO and plan is Action.ATTEMPT:
            self.fail(ImpossibleExpectationError,
                      "a decision with tls 'no' never plans 'attempt'", "plan", "attempt", True)
        outcomes = self.outcomes(t["outcome"], plan, tls) if "outcome" in t else ()
        sources = self.entries(t, "source", self.source_entry,
                               "option and the scope expected to supply it")
        decided_by = self.entries(t, "decided_by", self.decided_by_entry,
                                  f"decision field ({', '.join(DECIDED_BY_KEYS)})")
        effective = self.entries(t, "effective", self.effective_entry,
                                 "option and its expected effective value")
        identities = self.identities(t["identities"]) if "identities" in t else None
        sni = self.text("sni", t["sni"]) if "sni" in t else None
        if len(self.errors) > before or domain is None:
            return None
        return Case(
            file=self.filename, index=self.index, name=name, line=self.case_line,
            domain=domain, binding=binding, mx_host=mx_host, overrides=overrides,
            destination=destination, plan=plan, plan_code=plan_code,
            plan_enhanced=plan_enhanced, tls=tls, tls_verify=tls_verify,
            verification=verification, fallback=fallback, requiretls=requiretls,
            outcomes=outcomes, sources=sources, decided_by=decided_by, effective=effective,
            identities=identities, sni=sni, lines=dict(self.lines),
        )

    def code(self, key: str, value: object) -> int | None:
        if isinstance(value, int) and not isinstance(value, bool) and 200 <= value <= 599:
            return value
        self.fail(InvalidExpectationError, "expected an SMTP reply code (200-599)", key, value,
                  True)
        return None

    def enhanced(self, key: str, value: object) -> str | None:
        if isinstance(value, str) and _ENHANCED.fullmatch(value):
            return value
        self.fail(InvalidExpectationError, "expected an enhanced status code like '4.7.5'",
                  key, value, True)
        return None

    def overrides(self, value: object) -> Options | None:
        table = self.table_of("overrides", value)
        if table is None:
            return None
        values: dict[str, object] = {}
        seen: dict[str, str] = {}
        for raw_name, raw_value in table.items():
            key = f"overrides.{raw_name}"
            try:
                spec = option_spec(raw_name)
            except ConfigError as exc:
                self.fail(UnknownExpectationKeyError, exc.message, key)
                continue
            if self.twice(seen, spec.name, raw_name, key):
                continue
            if spec.name not in OVERRIDABLE_OPTIONS:
                self.fail(InvalidExpectationError,
                          f"cannot be overridden per message (allowed: "
                          f"{', '.join(sorted(OVERRIDABLE_OPTIONS))})", key)
                continue
            try:
                values[spec.name] = spec.parse_value(raw_value)
            except ConfigError as exc:
                self.fail(InvalidExpectationError, exc.message, key, raw_value, True)
        return Options(**values)  # type: ignore[arg-type]

    def inputs(self, value: object) -> Destination | None:
        table = self.table_of("inputs", value)
        if table is None:
            return None
        before = len(self.errors)
        for key in table:
            if key not in INPUT_KEYS:
                close = _close_match(key, INPUT_KEYS)
                self.fail(UnknownExpectationKeyError,
                          f"unknown destination-policy input {key!r}{close}", f"inputs.{key}")
        args: dict[str, Any] = {}
        if "mta_sts" in table:
            args["mta_sts"] = self.mta_sts(table["mta_sts"])
        if "mta_sts_fetch" in table:
            args["mta_sts_fetch"] = self.choice("inputs.mta_sts_fetch", table["mta_sts_fetch"],
                                                list(FetchOutcome))
        for flag in ("mx_dnssec", "requiretls", "tls_required_no", "tls_broken"):
            if flag in table:
                args[flag] = self.boolean(f"inputs.{flag}", table[flag])
        if "tlsa" in table or "tlsa_records" in table or "tlsa_base_domain" in table:
            args["tlsa"] = self.tlsa(table)
        if len(self.errors) > before:
            return None
        try:
            return Destination(**args)
        except (PolicyInputError, TypeError, ValueError) as exc:
            self.fail(InvalidExpectationError, str(exc), "inputs")
            return None

    def mta_sts(self, value: object) -> MtaStsPolicy | None:
        key = "inputs.mta_sts"
        if isinstance(value, str):
            try:
                return parse_policy(value)
            except PolicyInputError as exc:
                self.fail(InvalidExpectationError, _policy_message("MTA-STS policy document",
                                                                   exc), key)
                return None
        table = self.table_of(key, value)
        if table is None:
            return None
        for name in table:
            if name not in ("mode", "mx", "max_age"):
                self.fail(UnknownExpectationKeyError,
                          f"unknown MTA-STS policy key {name!r} (known: mode, mx, max_age)",
                          f"{key}.{name}")
        if "mode" not in table:
            self.fail(InvalidExpectationError, "an MTA-STS policy needs a 'mode'", key)
            return None
        mode = self.choice(f"{key}.mode", table["mode"], list(StsMode))
        mx = table.get("mx", [])
        if not isinstance(mx, list) or not all(isinstance(m, str) for m in mx):
            self.fail(InvalidExpectationError, "expected a list of MX patterns", f"{key}.mx",
                      mx, True)
            return None
        max_age = table.get("max_age", 86400)
        if mode is None:
            return None
        try:
            return MtaStsPolicy(mode=mode, mx=tuple(mx), max_age=max_age)
        except (PolicyInputError, TypeError, ValueError) as exc:
            self.fail(InvalidExpectationError, _policy_message("MTA-STS policy", exc), key)
            return None

    def tlsa(self, table: Mapping[str, Any]) -> TlsaLookup | None:
        records: list[TlsaRecord] = []
        raw_records = table.get("tlsa_records", [])
        if not isinstance(raw_records, list):
            self.fail(InvalidExpectationError, "expected a list of TLSA records",
                      "inputs.tlsa_records", raw_records, True)
            return None
        for i, text in enumerate(raw_records):
            if not isinstance(text, str):
                self.fail(InvalidExpectationError, f"TLSA record #{i + 1}: expected a string "
                          "such as \"3 1 1 <hex>\"", "inputs.tlsa_records", text, True)
                continue
            try:
                records.append(TlsaRecord.parse(text))
            except (PolicyInputError, TypeError, ValueError) as exc:
                self.fail(InvalidExpectationError, f"TLSA record #{i + 1}: {exc}",
                          "inputs.tlsa_records", text, True)
        if "tlsa" in table:
            status = self.choice("inputs.tlsa", table["tlsa"], list(TlsaLookupStatus))
        elif "tlsa_records" in table:
            status = TlsaLookupStatus.RECORDS
        else:
            self.fail(InvalidExpectationError, "'tlsa_base_domain' needs 'tlsa' or "
                      "'tlsa_records'", "inputs.tlsa_base_domain")
            return None
        base = table.get("tlsa_base_domain")
        if base is not None and not isinstance(base, str):
            self.fail(InvalidExpectationError, "expected a host name",
                      "inputs.tlsa_base_domain", base, True)
            return None
        if status is None or len(records) != len(raw_records):
            return None
        try:
            return TlsaLookup(status, tuple(records), base_domain=base)
        except PolicyInputError as exc:
            self.fail(InvalidExpectationError, str(exc), "inputs.tlsa")
            return None

    def outcomes(self, value: object, plan: Action | None,
                 tls: Tls | None) -> tuple[ExpectedOutcome, ...]:
        table = self.expectations_of("outcome", value, "observation and its expected action")
        if table is None:
            return ()
        result: list[ExpectedOutcome] = []
        known = ", ".join(o.value for o in Observation)
        for raw_name, raw in table.items():
            key = f"outcome.{raw_name}"
            try:
                observation = Observation(raw_name)
            except ValueError:
                close = _close_match(raw_name, [o.value for o in Observation])
                self.fail(ImpossibleExpectationError,
                          f"unknown observation {raw_name!r}{close} (known: {known})", key)
                continue
            spec: Mapping[str, Any]
            if isinstance(raw, str):
                spec = {"action": raw}
            elif isinstance(raw, dict):
                spec = raw
                for extra in spec:
                    if extra not in _OUTCOME_KEYS:
                        self.fail(UnknownExpectationKeyError,
                                  f"unknown outcome key {extra!r} (known: "
                                  f"{', '.join(_OUTCOME_KEYS)})", f"{key}.{extra}")
            else:
                self.fail(InvalidExpectationError,
                          "expected an action or { action, code, enhanced, report }", key, raw,
                          True)
                continue
            if "action" not in spec:
                self.fail(InvalidExpectationError, "an outcome needs an 'action'", key)
                continue
            action = self.outcome_action(key, observation, spec["action"])
            if action == "bad":
                continue
            assert action is None or isinstance(action, Action)
            code = self.code(f"{key}.code", spec["code"]) if "code" in spec else None
            enhanced = (self.enhanced(f"{key}.enhanced", spec["enhanced"])
                        if "enhanced" in spec else None)
            report = self.boolean(f"{key}.report", spec["report"]) if "report" in spec else None
            if action is None and any(k in spec for k in ("code", "enhanced", "report")):
                self.fail(ImpossibleExpectationError,
                          f"an observation that is {NOT_APPLICABLE!r} has no status or report",
                          key)
                continue
            if action is not None and plan in (Action.SKIP, Action.FAIL, Action.DEFER):
                self.fail(ImpossibleExpectationError,
                          f"a plan of {plan.value!r} has no outcomes: observations only arise "
                          f"after STARTTLS is attempted (expect {NOT_APPLICABLE!r})", key)
                continue
            if action is not None and tls is Tls.NO:
                self.fail(ImpossibleExpectationError,
                          "with tls 'no' STARTTLS is never attempted, so no observation "
                          f"arises (expect {NOT_APPLICABLE!r})", key)
                continue
            result.append(ExpectedOutcome(observation, action, code, enhanced, report))
        return tuple(result)

    def outcome_action(self, key: str, observation: Observation, raw: object) -> object:
        if raw == NOT_APPLICABLE:
            return None
        members = [a.value for a in Action]
        if not isinstance(raw, str) or raw not in members:
            self.fail(ImpossibleExpectationError,
                      f"unknown action (known: {', '.join(members)}, {NOT_APPLICABLE})", key,
                      raw, True)
            return "bad"
        action = Action(raw)
        possible = POSSIBLE_ACTIONS[observation]
        if action not in possible:
            allowed = ", ".join(a.value for a in Action if a in possible)
            self.fail(ImpossibleExpectationError,
                      f"{observation.value!r} never leads to {raw!r} (possible: {allowed}, "
                      f"{NOT_APPLICABLE})", key, raw, True)
            return "bad"
        return action

    def entries(self, case: Mapping[str, Any], what: str,
                entry: Callable[[str, str, Any], tuple[str, _V] | None], wanted: str
                ) -> tuple[tuple[str, _V], ...]:
        """The entries of ``case``'s ``what`` table (none without one; an empty one is an
        error, see :meth:`expectations_of`), each read by ``entry(key, name, raw)``
        (``None``: it failed), in file order.  Two entries naming one field (option
        names are case-insensitive) are an error."""
        if what not in case:
            return ()
        table = self.expectations_of(what, case[what], wanted)
        if table is None:
            return ()
        found: list[tuple[str, _V]] = []
        seen: dict[str, str] = {}
        for name, raw in table.items():
            key = f"{what}.{name}"
            read = entry(key, name, raw)
            if read is not None and not self.twice(seen, read[0], name, key):
                found.append(read)
        return tuple(found)

    def option(self, key: str, name: str) -> OptionSpec | None:
        try:
            return option_spec(name)
        except ConfigError as exc:
            self.fail(UnknownExpectationKeyError, exc.message, key)
            return None

    def source_entry(self, key: str, name: str, raw: Any) -> tuple[str, str] | None:
        spec = self.option(key, name)
        if spec is None:
            return None
        text = self.text(key, raw)
        return None if text is None else (spec.name, text)

    def decided_by_entry(self, key: str, name: str, raw: Any) -> tuple[str, str] | None:
        if name not in DECIDED_BY_KEYS:
            self.fail(UnknownExpectationKeyError,
                      f"unknown decision field {name!r} (known: {', '.join(DECIDED_BY_KEYS)})",
                      key)
            return None
        text = self.text(key, raw)
        return None if text is None else (name, text)

    def effective_entry(self, key: str, name: str, raw: Any) -> tuple[str, object] | None:
        spec = self.option(key, name)
        if spec is None:
            return None
        try:
            return spec.name, spec.parse_value(raw)
        except ConfigError as exc:
            self.fail(InvalidExpectationError, exc.message, key, raw, True)
            return None

    def identities(self, value: object) -> tuple[str, ...] | None:
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return tuple(value)
        self.fail(InvalidExpectationError, "expected a non-empty list of names", "identities",
                  value, True)
        return None


def _close_match(word: str, known: Mapping[str, str] | Sequence[str]) -> str:
    found = difflib.get_close_matches(word, list(known), n=1)
    return f" (did you mean {found[0]!r}?)" if found else ""


def loads_expectations(text: str, filename: str = "<string>",
                       base_dir: str | None = None) -> ExpectationFile:
    """Parse an expectation file's text; every problem is reported at once.

    ``config`` paths in the file are taken relative to ``base_dir`` (default:
    the directory of ``filename``).  Raises :class:`ExpectationError` or
    :class:`~tlspolicy.errors.ConfigErrors` listing several.
    """
    # Read as every TOML file of the package is read (a byte order mark dropped, errors
    # with the parser's line), so a file the configuration loader reads is read here.
    try:
        data = parse_toml(text, filename)
    except ConfigSyntaxError as exc:
        raise ExpectationSyntaxError(exc.message, exc.location) from None
    text = text.removeprefix("\ufeff")
    lines = _Lines(text)
    errors: list[ConfigError] = []
    if base_dir is None:
        base_dir = os.path.dirname(filename)
    for key in data:
        if key not in _FILE_KEYS:
            errors.append(UnknownExpectationKeyError(
                f"unknown top-level key {key!r}{_close_match(key, _FILE_KEYS)} (known: "
                f"{', '.join(_FILE_KEYS)}; cases are [[case]] tables)",
                Location(file=filename, line=lines.top(key), option=key)))
    config: tuple[str, ...] = ()
    if "config" in data:
        raw = data["config"]
        paths = [raw] if isinstance(raw, str) else raw
        if not isinstance(paths, list) or not paths or not all(
                isinstance(p, str) and p for p in paths):
            errors.append(InvalidExpectationError(
                "'config' must be a file name or a list of file names",
                Location(file=filename, line=lines.top("config"), option="config"),
                value=raw, has_value=True))
        else:
            config = tuple(os.path.normpath(os.path.join(base_dir, p)) for p in paths)
    raw_cases = data.get("case", [])
    if not isinstance(raw_cases, list) or not all(isinstance(c, dict) for c in raw_cases):
        errors.append(ExpectationSyntaxError(
            "'case' must be an array of tables ([[case]])",
            Location(file=filename, line=lines.top("case"), option="case")))
        raw_cases = []
    elif not raw_cases and not errors:
        errors.append(ExpectationSyntaxError(
            "the file has no [[case]]; an empty expectation file would test nothing",
            Location(file=filename)))
    cases: list[Case] = []
    names: dict[str, int] = {}
    for i, table in enumerate(raw_cases):
        reader = _CaseReader(filename, i + 1, table, lines.case_keys(i), lines.case_line(i),
                             errors)
        case = reader.read()
        if case is None:
            continue
        if case.name in names:
            errors.append(InvalidExpectationError(
                f"case name {case.name!r} already used by case #{names[case.name]}; names "
                "identify cases in reports and must be unique",
                reader.loc("name"), value=case.name, has_value=True))
            continue
        names[case.name] = case.index
        cases.append(case)
    ConfigErrors.raise_if_any(errors)
    return ExpectationFile(filename, config, tuple(cases), lines.top("config"))


def load_expectations(path: str | os.PathLike[str]) -> ExpectationFile:
    """Read an expectation file from disk (see :func:`loads_expectations`)."""
    name = os.fspath(path)
    try:
        # Regular files only, with the configuration reader's size cap.
        text = read_regular_text(name)
    except FileReadError as exc:
        raise ExpectationSyntaxError(exc.message, exc.location) from None
    return loads_expectations(text, name)
