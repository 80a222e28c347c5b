"""Warnings about configurations that load but are probably not what was meant.

Every check only reports what it can prove cheaply from the configuration;
when in doubt it stays silent.  Each warning names its scope path (and, for
``ecelerity.conf`` reader findings, ``file:line:column``).

Checks (the ``code`` of each :class:`LintWarning`):

``verify-without-tls``
    ``tls_verify``, ``tls_ca``, ``tls_certificate`` or ``tls_key`` set in a
    scope where the effective ``tls`` is ``no`` for every binding and domain
    it can apply to (and neither MTA-STS nor DANE can switch TLS on).
``fallback-under-required``
    ``tls_ifavailable_fallback`` set where ``tls`` is ``required``
    everywhere it applies: the option only matters with ``ifavailable``.
``regex-shadowed``
    a regex domain stanza whose options are all (or partly) taken by an
    earlier regex in the same container that provably matches every name it
    matches (simple literal patterns with optional ``^``/``$``).
``unreachable-domain-option``
    an option of a global or group domain stanza that every binding it can
    apply through overrides with a different value: it never takes effect.
``group-beats-global-domain``
    the trap of precedence steps 3-4 over step 5: a global domain stanza sets
    an option that a binding or its binding_group also sets, so the domain's
    value never applies through those bindings.
``dane-module-missing``
    (``ecelerity.conf``) ``use_dane`` without a ``dane`` module stanza:
    Momentum ignores ``use_dane`` then.
``likely-typo``
    (``ecelerity.conf``) a skipped option whose name closely resembles a TLS
    option.
``regex-upper-case``
    a regex domain whose pattern has an upper-case literal letter outside an
    escape, a class name or a case-insensitive group: names are matched
    lower-cased, so that part of the pattern can never match.
``floor-raised`` (informational)
    a floor had to raise a value the chain gives through a binding (for a
    regex floor: may have to, for some name it matches).  Informational
    findings never fail ``lint --strict``.
``exception-without-reason``
    a domain stanza or floor with ``expires`` but no ``reason``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from typing import Final

import attrs

from ..errors import Location
from ..floors import below, regex_chain_values
from ..names import DomainKind
from ..options import OPTION_SPECS, UNSET, Options, ScopeKind, Tls, TlsVerify
from ..resolver import Resolver
from ..scopes import Config, DomainScope, FloorScope, build_config
from ..scopes.models import floor_path, scope_path
from ..scopes.stanzas import iter_stanzas
from .ecelerity import EcelerityDocument, load_ecelerity_config, read_ecelerity
from .loader import line_finder, load_config, refuse_empty_policy

__all__ = [
    "LintWarning",
    "lint_config",
    "lint_document",
    "lint_file",
    "lint_files",
    "upper_case_literal",
]

_Path = tuple[tuple[ScopeKind, str], ...]


@attrs.frozen(slots=True)
class LintWarning:
    """One finding: a short ``code``, the scope path, a message, where known a location."""

    code: str
    scope: str
    message: str
    location: Location | None = None
    informational: bool = False
    """A note, not a probable mistake: never counted by ``lint --strict``."""

    def describe(self) -> str:
        """One line: ``[file:line:col: ]scope: code: message``."""
        head = f"{self.location.describe()}: " if self.location is not None else ""
        if self.location is None or self.location.scope is None:
            head += f"{self.scope}: "
        return f"{head}{self.code}: {self.message}"


@attrs.frozen(slots=True)
class _Binding:
    name: str
    group: str
    path: _Path
    group_path: _Path
    options: Options
    group_options: Options
    stanzas: tuple[tuple[_Path, DomainScope], ...]


def _bindings(config: Config, resolver: Resolver) -> list[_Binding]:
    groups = {g.name: g for g in config.binding_groups}
    declared = {b.name: (g, b) for g, b in config.iter_bindings()}
    out = []
    for name in resolver.bindings:
        group_name = resolver.binding_group_of(name)
        group = groups.get(group_name)
        g_path: _Path = ((ScopeKind.BINDING_GROUP, group_name),)
        b_opts = Options()
        b_domains: tuple[DomainScope, ...] = ()
        in_group = False
        if name in declared:
            owner, scope = declared[name]
            b_opts, b_domains = scope.options, scope.domains
            in_group = owner in groups and any(x is scope for x in groups[owner].bindings)
        b_path: _Path = ((*g_path, (ScopeKind.BINDING, name)) if in_group
                         else ((ScopeKind.BINDING, name),))
        stanzas = [(b_path, d) for d in b_domains]
        if group is not None:
            stanzas += [(g_path, d) for d in group.domains]
        stanzas += [((), d) for d in config.domains]
        out.append(_Binding(name, group_name, b_path, g_path, b_opts,
                            group.options if group is not None else Options(),
                            tuple(stanzas)))
    return out


def _first(name: str, *layers: Options) -> object:
    for options in layers:
        value = getattr(options, name)
        if value is not UNSET:
            return value
    return OPTION_SPECS[name].default


class _Linter:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.resolver = Resolver(config, decision_cache_size=0)
        self.bindings = _bindings(config, self.resolver)
        self.warnings: list[LintWarning] = []

    def warn(self, code: str, path: _Path, message: str) -> None:
        self.warnings.append(LintWarning(code, scope_path(*path), message))

    def check_floors(self) -> None:
        floors = self.config.floors
        if not floors:
            return
        chain = Resolver(attrs.evolve(self.config, floors=()), decision_cache_size=0)
        for floor in floors:
            path = floor_path(floor.name.text)
            for binding in self.bindings:
                raised: list[str] = []
                if floor.name.kind is not DomainKind.REGEX:
                    before, _s = chain.effective(floor.name.key, binding.name)
                    after, _s = self.resolver.effective(floor.name.key, binding.name)
                    for option, _value in floor.options.items():
                        if before[option] != after[option]:
                            raised.append(f"{option} from {_shown(option, before[option])} "
                                          f"to {_shown(option, after[option])}")
                    verb = "raises"
                else:
                    for option, wanted in floor.options.items():
                        values = regex_chain_values(self.config, chain, binding.name,
                                                    floor.name, option)
                        weaker = sorted(_shown(option, v) for v in values
                                        if below(option, v, wanted))
                        if weaker:
                            raised.append(f"{option} from {' or '.join(weaker)} to at least "
                                          f"{_shown(option, wanted)}")
                    verb = "may raise"
                if raised:
                    self.warnings.append(LintWarning(
                        "floor-raised", path,
                        f"{verb} {', '.join(raised)} through binding {binding.name!r}",
                        informational=True))

    def check_reasons(self) -> None:
        for path, stanza in iter_stanzas(self.config):
            if stanza.expires is not None and stanza.reason is None:
                self.warnings.append(LintWarning(
                    "exception-without-reason", path,
                    f"expires {stanza.expires.isoformat()} but gives no reason: say why the "
                    "exception exists, so whoever meets it (or its expiry) knows"))

    # -- which bindings a scope applies through

    def applicable(self, path: _Path) -> list[_Binding]:
        if not path:
            return self.bindings
        kind, name = path[0]
        if kind is ScopeKind.DOMAIN:
            return self.bindings
        if kind is ScopeKind.BINDING_GROUP:
            members = [b for b in self.bindings if b.group == name]
            if len(path) > 1 and path[1][0] is ScopeKind.BINDING:
                return [b for b in members if b.name == path[1][1]]
            return members
        return [b for b in self.bindings if b.name == name]

    def possible(self, option: str, binding: _Binding) -> set[object]:
        """Every value ``option`` can take through ``binding`` (a superset)."""
        found = {_first(option, binding.options, binding.group_options, self.config.options)}
        for _path, stanza in binding.stanzas:
            value = getattr(stanza.options, option)
            if value is not UNSET:
                found.add(value)
        return found

    def tls_values(self, path: _Path, stanza: DomainScope | None) -> tuple[set[object], bool]:
        """Possible effective tls values where a scope applies, and whether MTA-STS or
        DANE may switch TLS on there."""
        values: set[object] = set()
        policies = False
        for binding in self.applicable(path):
            if stanza is not None and stanza.name.kind is not DomainKind.REGEX:
                effective, _src = self.resolver.effective(stanza.name.key, binding.name)
                values.add(effective["tls"])
                policies |= bool(effective["use_mta_sts"]) or bool(effective["use_dane"])
            else:
                values |= self.possible("tls", binding)
                policies |= True in self.possible("use_mta_sts", binding)
                policies |= True in self.possible("use_dane", binding)
        return values, policies

    # -- the checks

    def scopes(self) -> Iterable[tuple[_Path, Options, DomainScope | None]]:
        config = self.config
        yield (), config.options, None
        for d in config.domains:
            yield ((ScopeKind.DOMAIN, d.name.text),), d.options, d
        for g in config.binding_groups:
            gp: _Path = ((ScopeKind.BINDING_GROUP, g.name),)
            yield gp, g.options, None
            for d in g.domains:
                yield (*gp, (ScopeKind.DOMAIN, d.name.text)), d.options, d
            for b in g.bindings:
                bp = (*gp, (ScopeKind.BINDING, b.name))
                yield bp, b.options, None
                for d in b.domains:
                    yield (*bp, (ScopeKind.DOMAIN, d.name.text)), d.options, d
        for b in config.bindings:
            bp = ((ScopeKind.BINDING, b.name),)
            yield bp, b.options, None
            for d in b.domains:
                yield (*bp, (ScopeKind.DOMAIN, d.name.text)), d.options, d

    def check_tls_dependent(self) -> None:
        for path, options, stanza in self.scopes():
            if not self.applicable(path):
                continue
            needs_tls = [name for name in ("tls_verify", "tls_ca", "tls_certificate", "tls_key")
                         if isinstance(getattr(options, name), str)
                         or getattr(options, name) in (TlsVerify.OPTIONAL, TlsVerify.CA,
                                                       TlsVerify.HOST)]
            has_fallback = isinstance(options.tls_ifavailable_fallback, bool)
            if not needs_tls and not has_fallback:
                continue
            values, policies = self.tls_values(path, stanza)
            if needs_tls and values == {Tls.NO} and not policies:
                self.warn("verify-without-tls", path,
                          f"{', '.join(needs_tls)} set, but tls is 'no' wherever this scope "
                          "applies (and neither MTA-STS nor DANE is on): the setting has no "
                          "effect")
            if has_fallback and values == {Tls.REQUIRED}:
                self.warn("fallback-under-required", path,
                          "tls_ifavailable_fallback set, but tls is 'required' wherever this "
                          "scope applies: the option only matters with tls = ifavailable")

    def check_regex_shadowing(self) -> None:
        containers: list[tuple[_Path, tuple[DomainScope, ...]]] = [((), self.config.domains)]
        for g in self.config.binding_groups:
            gp: _Path = ((ScopeKind.BINDING_GROUP, g.name),)
            containers.append((gp, g.domains))
            containers += [((*gp, (ScopeKind.BINDING, b.name)), b.domains) for b in g.bindings]
        containers += [(((ScopeKind.BINDING, b.name),), b.domains) for b in self.config.bindings]
        for parent, domains in containers:
            regexes = [d for d in domains if d.name.kind is DomainKind.REGEX]
            for i, later in enumerate(regexes):
                mine = {name for name, _v in later.options.items()}
                for earlier in regexes[:i]:
                    if not mine or not _covers(earlier.name.key, later.name.key):
                        continue
                    taken = sorted(mine & {name for name, _v in earlier.options.items()})
                    if not taken:
                        continue
                    whole = "all its options" if set(taken) == mine else ", ".join(taken)
                    self.warn("regex-shadowed", (*parent, (ScopeKind.DOMAIN, later.name.text)),
                              f"every name this regex matches also matches the earlier "
                              f"{earlier.name.text} in the same container, which sets "
                              f"{', '.join(taken)}: {whole} never apply (regex stanzas "
                              "are tried in declaration order)")
                    mine -= set(taken)

    def check_regex_case(self) -> None:
        for path, _options, stanza in self.scopes():
            if stanza is None or stanza.name.kind is not DomainKind.REGEX:
                continue
            letter = upper_case_literal(stanza.name.key)
            if letter is not None:
                self.warn("regex-upper-case", path,
                          f"the pattern has the upper-case literal {letter!r}, but names are "
                          "matched lower-cased: write it in lower case (or use (?i))")

    def check_domain_reachability(self) -> None:
        config = self.config
        targets: list[tuple[_Path, DomainScope]] = [((), d) for d in config.domains]
        for g in config.binding_groups:
            targets += [(((ScopeKind.BINDING_GROUP, g.name),), d) for d in g.domains]
        for parent, stanza in targets:
            spath = (*parent, (ScopeKind.DOMAIN, stanza.name.text))
            source = scope_path(*spath)
            bindings = self.applicable(parent) if parent else self.bindings
            if parent and not bindings:
                self.warn("unreachable-domain-option", spath,
                          f"binding_group {parent[0][1]!r} has no bindings, so this stanza "
                          "never applies")
                continue
            for option, value in stanza.options.items():
                overridden: dict[str, tuple[str, object]] = {}
                for binding in bindings:
                    winner = self.winner(binding, stanza, option, source)
                    if winner is not None:
                        overridden[binding.name] = winner
                if not overridden:
                    continue
                differs = any(v != value for _s, v in overridden.values())
                if not differs:
                    continue
                shown = OPTION_SPECS[option].dump(value)
                if len(overridden) == len(bindings):
                    by = "; ".join(f"{b}: {s}" for b, (s, _v) in sorted(overridden.items()))
                    self.warn("unreachable-domain-option", spath,
                              f"{option} = {shown!r} never applies: every binding it can "
                              f"apply through overrides it ({by})")
                if parent:
                    continue
                trapped = sorted(
                    (b, s) for b, (s, v) in overridden.items()
                    if v != value and not s.split(" > ")[-1].startswith("domain ")
                    and not s.startswith("floor "))
                if trapped:
                    names = ", ".join(f"{b} (by {s})" for b, s in trapped)
                    self.warn("group-beats-global-domain", spath,
                              f"{option} = {shown!r} does not apply through {names}: a "
                              "binding's or binding_group's own option beats a global domain "
                              "stanza (precedence steps 3-4 before 5); to apply it there, "
                              "repeat the domain stanza inside that binding_group or binding")

    def winner(self, binding: _Binding, stanza: DomainScope, option: str,
               source: str) -> tuple[str, object] | None:
        """The scope (and value) that beats ``stanza`` for ``option`` via ``binding``."""
        if stanza.name.kind is not DomainKind.REGEX:
            values, sources = self.resolver.effective(stanza.name.key, binding.name)
            if sources[option].scope != source:
                return sources[option].scope, values[option]
            return None
        floor = self.floor_of(stanza, option)
        if floor is not None:
            # A floor with the same pattern holds at least this value everywhere.
            return None
        in_group = source.startswith("binding_group")
        # Precedence, innermost first: the binding's own restatement of this regex, the
        # binding, the group's restatement, the group. A restatement of the same pattern
        # wins as an exact name's restatement does.
        layers = [self.restated(binding, binding.path, stanza, option),
                  (binding.options, scope_path(*binding.path))]
        if not in_group:
            layers += [self.restated(binding, binding.group_path, stanza, option),
                       (binding.group_options, scope_path(*binding.group_path))]
        for layer in layers:
            if layer is None:
                continue
            options, path = layer
            value = getattr(options, option)
            if value is not UNSET:
                return path, value
        return None

    @staticmethod
    def restated(binding: _Binding, where: _Path, stanza: DomainScope,
                 option: str) -> tuple[Options, str] | None:
        """A regex stanza of ``where`` with ``stanza``'s pattern that sets ``option``."""
        for path, other in binding.stanzas:
            if (path == where and other.name.kind is DomainKind.REGEX
                    and other.name.key == stanza.name.key
                    and getattr(other.options, option) is not UNSET):
                return other.options, scope_path(*path, (ScopeKind.DOMAIN, other.name.text))
        return None


    def floor_of(self, stanza: DomainScope, option: str) -> FloorScope | None:
        """A floor with the stanza's own pattern that holds at least its value."""
        value = getattr(stanza.options, option)
        for floor in self.config.floors:
            wanted = getattr(floor.options, option)
            if floor.name == stanza.name and wanted is not UNSET \
                    and not below(option, wanted, value):
                return floor
        return None


def _shown(option: str, value: object) -> str:
    return str(OPTION_SPECS[option].dump(value))


_META: Final = re.compile(r"[.^$*+?{}\[\]\\|()]")


def _literal(pattern: str) -> tuple[bool, str, bool] | None:
    """``(anchored at start, literal text, anchored at end)`` for simple patterns."""
    start = pattern.startswith("^")
    body = pattern[1:] if start else pattern
    end = body.endswith("$") and not body.endswith("\\$")
    body = body[:-1] if end else body
    out = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            if i + 1 >= len(body) or body[i + 1].isalnum():
                return None
            out.append(body[i + 1])
            i += 2
            continue
        if _META.match(ch):
            return None
        out.append(ch)
        i += 1
    return start, "".join(out), end


def _case_insensitive(pattern: str) -> bool:
    """Whether a flag group (``(?i)``, ``(?si:...)``, ``(?i-s)``) turns on ``i``."""
    start = pattern.find("(?")
    while start != -1:
        i = start + 2
        # Flag letters never contain "(?", so the scans do not overlap: linear.
        while i < len(pattern) and pattern[i] in "imsU":
            if pattern[i] == "i":
                return True
            i += 1
        start = pattern.find("(?", i)
    return False


def upper_case_literal(pattern: str) -> str | None:
    """The first upper-case literal letter of an RE2 pattern, or ``None``.

    Letters after a backslash (``\\D``, ``\\pL``, ``\\p{Greek}``), inside
    ``[[:upper:]]``-style class names and ``(?P<Name>`` group names are
    syntax, not literals; a pattern with a ``(?i`` flag anywhere is left
    alone.  A single left-to-right scan: linear in the pattern's length.
    """
    if _case_insensitive(pattern):
        return None
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            nxt = pattern[i + 1:i + 2]
            if nxt in ("p", "P") and pattern[i + 2:i + 3] == "{":
                close = pattern.find("}", i + 3)
                i = close + 1 if close != -1 else n
            elif nxt in ("p", "P"):
                i += 3
            else:
                i += 2
            continue
        if pattern.startswith("[:", i):
            close = pattern.find(":]", i + 2)
            if close != -1:
                i = close + 2
                continue
        if pattern.startswith("(?P<", i):
            close = pattern.find(">", i + 4)
            if close != -1:
                i = close + 1
                continue
        if "A" <= ch <= "Z":
            return ch
        i += 1
    return None


def _covers(earlier: str, later: str) -> bool:
    """Whether every string ``later`` matches (re.search) is matched by ``earlier``."""
    a, b = _literal(earlier), _literal(later)
    if a is None or b is None:
        return False
    a_start, a_text, a_end = a
    b_start, b_text, b_end = b
    if not a_start and not a_end:
        return a_text in b_text
    if a_start and not a_end:
        return b_start and b_text.startswith(a_text)
    if a_end and not a_start:
        return b_end and b_text.endswith(a_text)
    return b_start and b_end and a_text == b_text


def lint_config(config: Config) -> list[LintWarning]:
    """Every provable likely mistake in a validated configuration."""
    linter = _Linter(config)
    linter.check_tls_dependent()
    linter.check_regex_shadowing()
    linter.check_regex_case()
    linter.check_domain_reachability()
    linter.check_floors()
    linter.check_reasons()
    return linter.warnings


def _dane_scopes(config: Config) -> list[str]:
    found = []
    for path, options in config.iter_options():
        if options.use_dane is True:
            found.append(path)
    return found


def lint_document(document: EcelerityDocument, config: Config | None = None
                  ) -> list[LintWarning]:
    """Reader findings of an ``ecelerity.conf`` plus :func:`lint_config` of its model.

    Raises the validator's errors when the document does not validate.
    """
    if config is None:
        config = build_config(document.tree)
    warnings = []
    for item in document.warnings:
        if item.suggestion is not None:
            warnings.append(LintWarning(
                "likely-typo", item.location.scope or "global",
                f"skipped {item.kind} {item.name!r}: not an outbound TLS option; did you mean "
                f"{item.suggestion!r}?", item.location))
    if not document.has_dane_module:
        for path in _dane_scopes(config):
            warnings.append(LintWarning(
                "dane-module-missing", path,
                "use_dane is on but the file has no 'dane' module stanza: Momentum ignores "
                "use_dane without the dane module (tlspolicy applies it)"))
    warnings += lint_config(config)
    return warnings


def lint_file(path: str | os.PathLike[str], *, format: str | None = None) -> list[LintWarning]:
    """Lint one TOML or ``ecelerity.conf`` file (``format``, else chosen by its name).

    Raises :class:`~tlspolicy.errors.ConfigError` (or ``ConfigErrors``) when
    the file does not load.
    """
    name = os.fspath(path)
    if format == "ecelerity" or (format is None and name.endswith((".conf", ".ecelerity"))):
        document = read_ecelerity(name)
        config = load_ecelerity_config(name)
        refuse_empty_policy(config, name, toml=False)
        warnings = lint_document(document, config)
    else:
        # load_config, not load_file: it also refuses a file that sets no option.
        warnings = lint_config(load_config(name, format=format))
    # The model knows scope paths, not lines: the file's own index says where each is.
    line_of = line_finder(name, format=format)
    return [w if w.location is not None and w.location.line is not None
            else attrs.evolve(w, location=(w.location or Location(file=name)).evolve(
                line=line_of(w.scope, None)))
            for w in warnings]


def lint_files(paths: Sequence[str | os.PathLike[str]]) -> list[LintWarning]:
    """:func:`lint_file` for each path, in order."""
    out: list[LintWarning] = []
    for path in paths:
        out += lint_file(path)
    return out

