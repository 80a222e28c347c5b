"""MkDocs hook: replace ``<!-- generated: NAME -->`` comments with tables built from code.

The option reference, the decision tables, the status table and the API index
are rendered from the same objects the library uses (``OPTION_SPECS``,
``negotiation_outcome``, ``certificate_outcome``, ``STATUSES``,
``tlspolicy.__all__``), so the documentation cannot drift from the code.  A
placeholder with an unknown name fails the build instead of vanishing.
"""

from __future__ import annotations

import argparse
import ast
import enum
import functools
import importlib
import inspect
import itertools
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import tlspolicy
from tlspolicy import (
    Config,
    Decision,
    Observation,
    Options,
    Outcome,
    Resolver,
    Status,
    Tls,
    Verification,
)
from tlspolicy.options import (
    OPTION_SPECS,
    UNSET,
    CompatVersion,
    ScopeKind,
    TlsProtocols,
    TlsVersion,
)
from tlspolicy.outcomes import (
    CERTIFICATE_OBSERVATIONS,
    NEGOTIATION_OBSERVATIONS,
    REQUIRETLS_BOUNCE,
    STATUSES,
    certificate_outcome,
    negotiation_outcome,
)
from tlspolicy.resolver import OVERRIDABLE_OPTIONS

__all__ = ["GENERATORS", "PLACEHOLDER", "UnknownPlaceholderError", "expand", "on_page_markdown"]

PLACEHOLDER: Final = re.compile(r"<!--\s*generated:\s*([a-z0-9_-]+)\s*-->")
"""The comment a page uses to ask for a generated block."""


class UnknownPlaceholderError(Exception):
    """A page asks for a generated block this hook does not know."""


def _code(text: object) -> str:
    return f"`{text}`"


def _cell(text: str) -> str:
    # A pipe inside a cell would split the table row.
    return text.replace("|", "\\|")


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.extend("| " + " | ".join(_cell(c) for c in row) + " |" for row in rows)
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Options

_SCOPE_ORDER: Final = (ScopeKind.GLOBAL, ScopeKind.BINDING_GROUP, ScopeKind.BINDING,
                       ScopeKind.DOMAIN)


def option_values(name: str) -> str:
    """The accepted values of an option, derived from its default and parser."""
    spec = OPTION_SPECS[name]
    default = spec.default
    if default is UNSET:
        return "path, or `none` (cancels a parent's)" if spec.parse("none") is None else "string"
    if isinstance(default, bool):
        return "boolean"
    if isinstance(default, enum.Enum):
        return ", ".join(_code(m.value) for m in type(default))
    if isinstance(default, TlsProtocols):
        tokens = ", ".join(["ALL", *(v.value for v in TlsVersion)])
        return f"`:`-separated list of `+`/`-` tokens: {tokens}"
    return "string"


def option_default(name: str) -> str:
    """The built-in default of an option as written in a file, or ``unset``."""
    spec = OPTION_SPECS[name]
    if spec.default is UNSET:
        return "unset"
    dumped = spec.dump(spec.default)
    if isinstance(dumped, bool):
        return _code(str(dumped).lower())
    return _code(dumped)


def option_scopes(name: str) -> str:
    """The scopes an option is valid in, outermost first."""
    scopes = OPTION_SPECS[name].scopes
    if scopes == frozenset(ScopeKind):
        return "all"
    return ", ".join(s.value for s in _SCOPE_ORDER if s in scopes)


def options_table() -> str:
    """Every option of ``OPTION_SPECS``: values, default, scopes, since, meaning."""
    rows = [
        (_code(name),
         option_values(name), option_default(name), option_scopes(name), str(spec.since),
         "yes" if name in OVERRIDABLE_OPTIONS else "no", spec.summary)
        for name, spec in OPTION_SPECS.items()
    ]
    return _table(("option", "values", "default", "valid in", "since", "per message",
                   "meaning"), rows)


def overridable_list() -> str:
    """The options a per-message override may set, in registry order."""
    names = [n for n in OPTION_SPECS if n in OVERRIDABLE_OPTIONS]
    return ", ".join(_code(n) for n in names)


# ---------------------------------------------------------------------------
# Decision tables

_OBSERVATION_TEXT: Final[Mapping[Observation, str]] = {
    Observation.STARTTLS_NOT_ADVERTISED: "STARTTLS not advertised",
    Observation.STARTTLS_REJECTED: "STARTTLS answered with a non-220 reply",
    Observation.HANDSHAKE_FAILED: "handshake failed (incl. a failing EHLO after it)",
    Observation.CHAIN_NOT_TRUSTED: "chain not trusted",
    Observation.CERTIFICATE_EXPIRED: "expired / not yet valid",
    Observation.NAME_MISMATCH: "name mismatch",
    Observation.TLSA_MISMATCH: "TLSA mismatch",
    Observation.REQUIRETLS_NOT_ADVERTISED: "REQUIRETLS not advertised",
}


def _status_short(status: Status | None) -> str:
    return "" if status is None else f" {status.code} {status.enhanced}"


def outcome_text(outcome: Outcome | None) -> str:
    """One table cell: the action, its status, and whether it is reported."""
    if outcome is None:
        return "-"
    text = outcome.action.name + _status_short(outcome.status)
    if outcome.report and outcome.action.name == "PROCEED":
        text += ", reported"
    return text


def negotiation_rows() -> Iterator[tuple[Tls, Observation | None]]:
    """The (tls, observation) rows of the negotiation table."""
    for tls in Tls:
        if tls is Tls.NO:
            yield tls, None
            continue
        for observation in NEGOTIATION_OBSERVATIONS:
            yield tls, observation


def _compat_4_0(tls: Tls) -> Decision:
    # Through the resolver, not negotiation_outcome: under 4.0 the resolver itself
    # must turn fallback off (tls_ifavailable_fallback does not exist there).  Built
    # from parts because CompatVersion.parse("4.0") yields (4,), which compares below
    # the registry's 4.0 = (4, 0).
    config = Config(options=Options(tls=tls), compatibility=CompatVersion((4, 0)))
    return Resolver(config).resolve("example.com")


def negotiation_table() -> str:
    """SEMANTICS section 4 first table, from :func:`negotiation_outcome`."""
    rows = []
    for tls, observation in negotiation_rows():
        if observation is None:
            rows.append((_code(tls.value), "(none: the plan is SKIP)", "-", "-", "-"))
            continue
        rows.append((
            _code(tls.value),
            f"{_OBSERVATION_TEXT[observation]} (`{observation.value}`)",
            outcome_text(negotiation_outcome(tls, observation, fallback=True)),
            outcome_text(negotiation_outcome(tls, observation, fallback=False)),
            outcome_text(_compat_4_0(tls).outcomes.get(observation)),
        ))
    return _table(("effective tls", "observation", "fallback true", "fallback false",
                   "compatibility 4.0"), rows)


def certificate_table() -> str:
    """SEMANTICS section 4 second table, from :func:`certificate_outcome`."""
    header = ("verification",
              *(f"{_OBSERVATION_TEXT[o]} (`{o.value}`)" for o in CERTIFICATE_OBSERVATIONS))
    rows = [
        (_code(v.value), *(outcome_text(certificate_outcome(v, o))
                           for o in CERTIFICATE_OBSERVATIONS))
        for v in Verification
    ]
    return _table(header, rows)


def status_table() -> str:
    """SEMANTICS section 4.1, from ``STATUSES`` plus the final REQUIRETLS bounce."""
    rows = [
        (_code(reason.value), str(s.code), s.enhanced, s.text,
         _code(s.tlsrpt) if s.tlsrpt else "-")
        for reason, s in STATUSES.items()
    ]
    b = REQUIRETLS_BOUNCE
    rows.append(("final bounce of a REQUIRETLS message (`REQUIRETLS_BOUNCE`)", str(b.code),
                 b.enhanced, b.text, "-"))
    return _table(("reason", "code", "enhanced", "text", "TLS-RPT result type"), rows)


# ---------------------------------------------------------------------------
# API index

API_GROUPS: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("Loading a configuration", ("tlspolicy.formats.loader", "tlspolicy.scopes.models",
                                 "tlspolicy.options")),
    ("Resolving", ("tlspolicy.resolver.core",)),
    ("The decision and its outcomes", ("tlspolicy.decision", "tlspolicy.outcomes")),
    ("The destination (what discovery found)", ("tlspolicy.policies.destination",
                                               "tlspolicy.policies.mtasts",
                                               "tlspolicy.policies.dane")),
    ("Reusing a connection", ("tlspolicy.reuse",)),
    ("Errors", ("tlspolicy.errors",)),
)
"""Sections of the API page and the modules whose exports they list."""


@functools.cache
def _attribute_docs(module_name: str) -> dict[str, str]:
    """Docstrings written as a string literal right after a module-level assignment."""
    module = importlib.import_module(module_name)
    tree = ast.parse(Path(inspect.getfile(module)).read_text("utf-8"))
    docs: dict[str, str] = {}
    body = tree.body
    for node, following in itertools.pairwise(body):
        target: ast.expr | None = None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        elif isinstance(node, ast.AnnAssign):
            target = node.target
        if (isinstance(target, ast.Name) and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)):
            docs[target.id] = following.value.value
    return docs


# Docstrings cite the library's internal specification by section; readers of the site
# get the page of these docs that covers that section instead.
_SPEC_PAGES: Final[Mapping[str, tuple[str, str]]] = {
    "2": ("Precedence", "precedence.md"),
    "3": ("Configuration", "configuration.md"),
    "4": ("Decisions", "decisions.md"),
    "4.1": ("Statuses", "decisions.md#statuses"),
    "5": ("Implemented standards", "standards/index.md"),
    "4.2": ("Connection reuse", "decisions.md"),
    "6": ("Decisions", "decisions.md"),
    "7": ("Floors", "floors.md"),
    "8": ("Expiring exceptions", "exceptions.md"),
    "9": ("Shadow evaluation", "shadow.md"),
    "10": ("Discovery", "discovery.md"),
    "11": ("Postfix answers", "postfix-answers.md"),
    "12": ("TLS-RPT reporting", "tlsrpt.md"),
}
_SPEC_CITATION: Final = re.compile(r"SEMANTICS(?: section)? (\d+(?:\.\d+)?)('s)?")


def _cite(match: re.Match[str]) -> str:
    title, page = _SPEC_PAGES[match.group(1)]
    return f"[{title}]({page})" + ("'s" if match.group(2) else "")


def _first_line(text: str | None) -> str:
    if not text:
        return ""
    paragraph = inspect.cleandoc(text).split("\n\n", 1)[0]
    line = " ".join(paragraph.split())
    # reST roles read badly in Markdown: :class:`~x.Y` -> `Y`.
    line = re.sub(r":[a-z]+:`~?([^`]+)`", lambda m: f"`{m.group(1).rsplit('.', 1)[-1]}`", line)
    line = _SPEC_CITATION.sub(_cite, line)
    return line.replace("``", "`")


def _home_module(name: str) -> str | None:
    for _title, modules in API_GROUPS:
        for module_name in modules:
            module = importlib.import_module(module_name)
            if name in getattr(module, "__all__", ()) or name in _attribute_docs(module_name):
                return module_name
    return None


def describe(name: str) -> str:
    """One line for a public name: its docstring's first sentence group, or ''."""
    home = _home_module(name)
    if home is not None:
        attribute = _attribute_docs(home).get(name)
        if attribute:
            return _first_line(attribute)
    obj = getattr(tlspolicy, name)
    if inspect.isclass(obj) or callable(obj):
        return _first_line(obj.__doc__)
    return ""


def _kind(obj: Any) -> str:
    if inspect.isclass(obj):
        if issubclass(obj, BaseException):
            return "exception"
        if issubclass(obj, enum.Enum):
            return "enum"
        return "class"
    if callable(obj):
        return "function"
    return "constant"


def _signature(name: str, obj: Any) -> str:
    if callable(obj) and not inspect.isclass(obj):
        try:
            return f"{name}{inspect.signature(obj)}".replace("'", "")
        except (TypeError, ValueError):  # pragma: no cover - builtins have no signature
            return name
    return name


def public_names() -> list[str]:
    """The names of ``tlspolicy.__all__`` the API page lists (dunders left out)."""
    return [n for n in tlspolicy.__all__ if not n.startswith("__")]


def api_index() -> str:
    """The public API grouped by purpose, one line per name."""
    grouped: dict[str, list[str]] = {title: [] for title, _ in API_GROUPS}
    other: list[str] = []
    for name in public_names():
        home = _home_module(name)
        title = next((t for t, mods in API_GROUPS if home in mods), None)
        (grouped[title] if title is not None else other).append(name)
    if other:
        grouped["Other"] = other
    parts: list[str] = []
    for title, names in grouped.items():
        if not names:
            continue
        parts.append(f"## {title}\n")
        for name in names:
            obj = getattr(tlspolicy, name)
            line = f"- `{_signature(name, obj)}` ({_kind(obj)})"
            text = describe(name)
            if text:
                line += f": {text}"
            if inspect.isclass(obj) and issubclass(obj, enum.Enum):
                line += " Members: " + ", ".join(f"`{m.name}`" for m in obj) + "."
            parts.append(line)
        parts.append("")
    return "\n".join(parts).rstrip() + "\n"


class MetricRow(tuple[str, str, tuple[str, ...], str]):
    """One ``MetricDefinition(name, kind, labels, help)`` as read from the source."""

    def __new__(cls, name: str, kind: str, labels: tuple[str, ...], help: str) -> MetricRow:
        return super().__new__(cls, (name, kind, labels, help))


def metric_definitions() -> tuple[MetricRow, ...]:
    """``METRIC_DEFINITIONS``, from the module that needs no extra (the metrics module
    itself needs ``prometheus_client``, which a docs-only install does not have)."""
    from tlspolicy.servers.metric_definitions import METRIC_DEFINITIONS

    return tuple(MetricRow(d.name, d.kind, d.labels, d.help) for d in METRIC_DEFINITIONS)


def metrics_table() -> str:
    """The daemon's Prometheus metrics, from ``METRIC_DEFINITIONS``."""
    rows = [(_code(name), kind, ", ".join(_code(label) for label in labels) or "-", text)
            for name, kind, labels, text in metric_definitions()]
    return _table(("Metric", "Type", "Labels", "Meaning"), rows)


def discovery_rules_table() -> str:
    """SEMANTICS 11's per-MX answer rules, from ``ANSWER_RULES``."""
    from tlspolicy.postfix.answers import ANSWER_RULES

    return _table(("Rule", "MX hosts", "Answer"),
                  [(f"({rule})", hosts, answer) for rule, hosts, answer in ANSWER_RULES])


def rule_names_table() -> str:
    """The ``rule_name`` label of answers with discovery, from ``RULE_NAMES``."""
    from tlspolicy.postfix.answers import (
        ANSWER_RULES,
        OWN_LEVEL_RULE,
        RULE_NAMES,
        STS_TESTING_RULE,
    )

    rows = [(_code(RULE_NAMES[rule]), f"({rule})", answer)
            for rule, _hosts, answer in ANSWER_RULES]
    rows += [(_code(STS_TESTING_RULE), "(e)", "the operator's mapping carrying a "
              "testing-mode policy's MTA-STS attributes (Postfix 3.10 and later)"),
             (_code(OWN_LEVEL_RULE), "-", "drop-in mode's `NOTFOUND`: Postfix's own level "
              "stands"),
             (_code("other"), "-", "none of these (never expected)")]
    return _table(("rule_name", "Rule", "Answer"), rows)


def discovery_table_keys() -> str:
    """The keys of the ``[discovery]`` table, from ``DISCOVERY_KEYS``."""
    from tlspolicy.formats.settings import DISCOVERY_KEYS

    def kind(spec: object) -> str:
        names: dict[object, str] = {bool: "boolean", str: "string", int: "integer"}
        return "number" if isinstance(spec, tuple) else names.get(spec, str(spec))

    return _table(("Key", "Type", "Sets"),
                  [(_code(key), kind(spec), text) for key, (spec, text) in
                   DISCOVERY_KEYS.items()])


# ---------------------------------------------------------------------------
# Command line


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
              ) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser, str]]:
    """Every command of the parser, depth first, with its one-line help."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield (*path, name), sub, helps.get(name, "")
                yield from _commands(sub, (*path, name))


def _argument_name(action: argparse.Action) -> str:
    if action.option_strings:
        names = ", ".join(action.option_strings)
        if action.nargs == 0:
            return names
        if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
            return f"{names} {{{','.join(str(c) for c in action.choices)}}}"
        metavar = action.metavar or action.dest.upper()
        return f"{names} {metavar}"
    metavar = action.metavar or action.dest
    return f"{metavar}..." if action.nargs in ("*", "+") else str(metavar)


def _argument_rows(parser: argparse.ArgumentParser) -> list[tuple[str, str]]:
    rows = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            continue
        text = (action.help or "").replace("%(prog)s", parser.prog)
        rows.append((_code(_argument_name(action)), text))
    return rows


def cli_reference() -> str:
    """Every command of ``tlspolicy``, its usage and every argument, from the parser."""
    from tlspolicy.cli import build_parser

    parser = build_parser()
    # The width argparse wraps usage lines at, so the page does not depend on a terminal.
    formatter = functools.partial(argparse.HelpFormatter, width=76)
    parser.formatter_class = formatter
    parts = [f"```text\n{parser.format_usage().strip()}\n```\n",
             _table(("argument", "meaning"), _argument_rows(parser)), ""]
    for path, sub, summary in _commands(parser):
        if any(isinstance(a, argparse._SubParsersAction) for a in sub._actions):
            title, depth = " ".join(path), "##"
        else:
            title, depth = " ".join(path), "##" if len(path) == 1 else "###"
        sub.formatter_class = formatter
        parts.append(f"{depth} tlspolicy {title}\n")
        if summary:
            parts.append(summary[0].upper() + summary[1:] + ".\n")
        if sub.description:
            parts.append(sub.description + "\n")
        parts.append(f"```text\n{sub.format_usage().strip()}\n```\n")
        rows = _argument_rows(sub)
        if rows:
            parts.append(_table(("argument", "meaning"), rows) + "\n")
    return "\n".join(parts).rstrip() + "\n"


# ---------------------------------------------------------------------------
# Precedence: what `tlspolicy resolve` prints for the page's first example

PRECEDENCE_COMMAND: Final = ("resolve", "example.com", "precedence.toml", "--binding", "b1")
"""The command whose output the Precedence page shows, on its first TOML block."""

_FIRST_TOML: Final = re.compile(r"^```toml\n(.*?)^```$", re.M | re.S)


def precedence_resolve() -> str:
    """The output of ``tlspolicy resolve`` on the first TOML block of precedence.md, run
    through the command line itself, so the page shows what the command prints."""
    import contextlib
    import io
    import tempfile

    from tlspolicy.cli import main

    page = Path(__file__).resolve().parent.parent / "precedence.md"
    match = _FIRST_TOML.search(page.read_text("utf-8"))
    if match is None:
        raise UnknownPlaceholderError("precedence.md has no ```toml block")
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / PRECEDENCE_COMMAND[2]
        path.write_text(match.group(1), "utf-8")
        args = [str(path) if a == PRECEDENCE_COMMAND[2] else a for a in PRECEDENCE_COMMAND]
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(args)
    if code != 0:
        raise UnknownPlaceholderError(f"tlspolicy {' '.join(PRECEDENCE_COMMAND)} exited "
                                      f"{code}: {err.getvalue().strip()}")
    return f"```text\n$ tlspolicy {' '.join(PRECEDENCE_COMMAND)}\n{out.getvalue()}```\n"


# ---------------------------------------------------------------------------

GENERATORS: Final[Mapping[str, Callable[[], str]]] = {
    "options": options_table,
    "overridable": overridable_list,
    "negotiation": negotiation_table,
    "certificate": certificate_table,
    "statuses": status_table,
    "api": api_index,
    "cli": cli_reference,
    "metrics": metrics_table,
    "discovery-rules": discovery_rules_table,
    "rule-names": rule_names_table,
    "discovery-table": discovery_table_keys,
    "precedence-resolve": precedence_resolve,
}
"""Placeholder name -> function rendering its Markdown."""


def expand(markdown: str, where: str = "<page>") -> str:
    """Replace every placeholder in ``markdown``; raise on an unknown name."""
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        generator = GENERATORS.get(name)
        if generator is None:
            known = ", ".join(sorted(GENERATORS))
            raise UnknownPlaceholderError(
                f"{where}: unknown placeholder 'generated: {name}' (known: {known})")
        return generator()

    return PLACEHOLDER.sub(replace, markdown)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """MkDocs event: expand the placeholders of one page."""
    from mkdocs.exceptions import PluginError

    try:
        return expand(markdown, page.file.src_uri)
    except UnknownPlaceholderError as exc:
        raise PluginError(str(exc)) from None
