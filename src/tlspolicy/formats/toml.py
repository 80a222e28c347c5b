"""The TOML configuration format: read with ``tomli`` (the standard library's ``tomllib``
in compiled wheels), write with ``tomli-w``.

Layout (every key optional; option names are case-insensitive)::

    compatibility = "4.8"          # Momentum version emulated; default: newest
    match_cache_size = 16384       # regex-domain match cache entries

    [global]                       # options of the global scope
    tls = "ifavailable"

    [[domain]]                     # global domain stanzas, in declaration order
    name = "partner.example"       # exact name, "/regex/" or an IP literal
    tls = "required"

    [[binding_group]]
    name = "transactional"
    tls_verify = "ca"
      [[binding_group.domain]]     # domain stanzas inside the group
      name = "bank.example"
      [[binding_group.binding]]    # member bindings
      name = "tx1"
        [[binding_group.binding.domain]]
        name = "bank.example"

    [[binding]]                    # bindings outside any group
    name = "bulk1"
      [[binding.domain]]
      name = "/\\\\.example$/"

    [[floor]]                      # minimums no binding can weaken (SEMANTICS 7)
    name = "partner.example"
    tls = "required"
    reason = "contract"            # domain stanzas and floors may also say
    expires = 2026-12-15           # expires (SEMANTICS 8) and expiry_weakens

Arrays of tables keep declaration order, which decides between regex domains.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import tomli
import tomli_w

from .._raw import RawOption, RawScope
from ..errors import (
    ConfigError,
    ConfigErrors,
    ConfigSyntaxError,
    InvalidValueError,
    Location,
    excerpt,
)
from ..expiry import expiry_errors
from ..floors import floor_protocol_errors
from ..names import DomainKind, DomainName
from ..options import NEWEST_VERSION, OPTION_SPECS, CompatVersion, Options, ScopeKind
from ..scopes import BindingGroupScope, BindingScope, Config, DomainScope, FloorScope, build_config
from ..scopes.models import (
    floor_path,
    trusted_binding,
    trusted_config,
    trusted_domain,
    trusted_exact_domains,
    trusted_group,
)
from ..scopes.stanzas import has_expiry
from .settings import discovery_table
from .toml_lines import Lines
from .toml_lines import TablePath as _Path

__all__ = ["config_to_toml", "dumps_toml", "loads_toml", "parse_toml", "toml_to_raw",
           "top_level_lines"]

_CHILD_KEYS: Final = {
    ScopeKind.GLOBAL: {"domain": ScopeKind.DOMAIN, "binding_group": ScopeKind.BINDING_GROUP,
                       "binding": ScopeKind.BINDING},
    ScopeKind.BINDING_GROUP: {"domain": ScopeKind.DOMAIN, "binding": ScopeKind.BINDING},
    ScopeKind.BINDING: {"domain": ScopeKind.DOMAIN},
    ScopeKind.DOMAIN: {},
}
_SETTINGS: Final = ("compatibility", "match_cache_size")
_STANZA_KEYS: Final = frozenset({"expires", "reason", "expiry_weakens"})


class _Reader:
    def __init__(self, text: str, filename: str) -> None:
        self.filename = filename
        self.lines = Lines(text)
        self.errors: list[ConfigError] = []

    def loc(self, path: _Path, key: str | None = None) -> Location:
        line = self.lines.key(path, key) if key is not None else None
        # Inline tables have no header line: fall back to the nearest enclosing one.
        while line is None and path:
            line = self.lines.table(path)
            path = path[:-1]
        return Location(file=self.filename, line=line)

    def scope(self, kind: ScopeKind, table: Mapping[str, Any], path: _Path,
              scope_desc: str) -> RawScope:
        name: str | None = None
        name_given = False
        options: list[RawOption] = []
        children: list[RawScope] = []
        attributes: list[RawOption] = []
        for key, value in table.items():
            lower = key.lower()
            if kind is ScopeKind.DOMAIN and lower in _STANZA_KEYS:
                # expires / reason / expiry_weakens: stanza attributes, not options.
                attributes.append(RawOption(key, value, self.loc(path, key)))
                continue
            if kind is not ScopeKind.GLOBAL and lower == "name":
                name_given = True
                if not isinstance(value, str):
                    self.errors.append(InvalidValueError(
                        f"{kind.value} name must be a string",
                        self.loc(path, key).evolve(scope=scope_desc), value=value,
                        has_value=True))
                else:
                    name = value
                continue
            child_kind = _CHILD_KEYS[kind].get(lower) if kind is not ScopeKind.GLOBAL else None
            if child_kind is not None:
                if lower != key:
                    self.errors.append(ConfigSyntaxError(
                        f"nested table key must be spelled {lower!r}",
                        self.loc(path, key).evolve(scope=scope_desc), value=key, has_value=True))
                children.extend(self.array(child_kind, value, path, lower, scope_desc))
                continue
            if isinstance(value, dict) or (
                isinstance(value, list) and value and all(isinstance(v, dict) for v in value)
            ):
                where = self.loc(path, key).evolve(scope=scope_desc, option=key)
                if lower in OPTION_SPECS:
                    self.errors.append(InvalidValueError(
                        "option value must be a string or boolean, not a table", where))
                else:
                    allowed = ", ".join(_CHILD_KEYS[kind]) or "none"
                    self.errors.append(ConfigSyntaxError(
                        f"unknown nested table {key!r} in a {kind.value} (allowed: {allowed})",
                        where))
                continue
            options.append(RawOption(key, value, self.loc(path, key)))
        if kind is not ScopeKind.GLOBAL and not name_given:
            self.errors.append(ConfigSyntaxError(
                f"{kind.value} table has no 'name'", self.loc(path).evolve(scope=scope_desc)))
        return RawScope(kind, name, self.loc(path), tuple(options), tuple(children),
                        tuple(attributes))

    def array(self, kind: ScopeKind, value: object, parent: _Path, key: str,
              parent_desc: str) -> list[RawScope]:
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.errors.append(ConfigSyntaxError(
                f"{key!r} must be an array of tables ([[{key}]]), so that declaration order "
                "is kept", self.loc(parent, key).evolve(scope=parent_desc), value=value,
                has_value=True))
            return []
        out = []
        for i, item in enumerate(value):
            path = (*parent, (key, i))
            desc = f"{parent_desc} > {key} #{i + 1}" if parent_desc != "global" else \
                f"{key} #{i + 1}"
            name = item.get("name")
            if isinstance(name, str):
                desc = (f"{parent_desc} > " if parent_desc != "global" else "") + \
                    f'{key} "{name}"'
            out.append(self.scope(kind, item, path, desc))
        return out

    def root(self, data: Mapping[str, Any]) -> RawScope:
        settings: list[RawOption] = []
        options: list[RawOption] = []
        children: list[RawScope] = []
        floors: list[RawScope] = []
        for key, value in data.items():
            lower = key.lower()
            if lower == "floor":
                floors.extend(self.array(ScopeKind.DOMAIN, value, (), lower, "global"))
            elif lower in _SETTINGS:
                settings.append(RawOption(lower, value, self.loc((), key)))
            elif lower == "global":
                if not isinstance(value, dict):
                    self.errors.append(ConfigSyntaxError(
                        "'global' must be a table ([global])", self.loc((), key),
                        value=value, has_value=True))
                    continue
                g = self.scope(ScopeKind.GLOBAL, value, (("global", None),), "global")
                options.extend(g.options)
            elif lower in _CHILD_KEYS[ScopeKind.GLOBAL]:
                children.extend(self.array(_CHILD_KEYS[ScopeKind.GLOBAL][lower], value, (),
                                           lower, "global"))
            elif lower == "discovery":
                # serve's I/O settings, not part of the Config: checked here (every spelling
                # at the first), read by serve.
                if key == next(k for k in data if k.lower() == "discovery"):
                    self.errors += discovery_table(data, self.filename,
                                                   lambda k: self.lines.key((), k))[1]
            elif lower in OPTION_SPECS:
                self.errors.append(ConfigSyntaxError(
                    "must sit in a scope table; put global options under "
                    "[global]", self.loc((), key).evolve(option=key)))
            else:
                self.errors.append(ConfigSyntaxError(
                    f"unknown top-level key {key!r} (known: compatibility, match_cache_size, "
                    "global, domain, binding_group, binding, floor, discovery)",
                    self.loc((), key)))
        return RawScope(ScopeKind.GLOBAL, None, Location(file=self.filename), tuple(options),
                        tuple(children), tuple(settings), tuple(floors))


class _Bail(Exception):
    """The fast reader met something it does not handle itself."""


# A host name the fast reader may key without normalise_domain: lower-case ASCII labels
# that normalise_domain would accept unchanged, and that cannot be an IP literal (the
# first character is no digit, no '[' and no ':' anywhere).  Names holding "xn--" go
# through normalise_domain, which checks their A-labels.
_PLAIN_LABEL: Final = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_PLAIN_HOST: Final = re.compile(rf"[a-z_](?:[a-z0-9_-]{{0,61}}[a-z0-9_])?(?:\.{_PLAIN_LABEL})*")
_VALUE_TYPES: Final = frozenset({str, bool})
_EXACT: Final = DomainKind.EXACT


class _FastReader:
    """Builds a :class:`Config` straight from ``tomllib``'s dictionaries.

    It accepts only a configuration that :func:`toml_to_raw` plus
    :func:`build_config` would accept, and builds the equal ``Config``; on
    anything unusual (any mistake, a key not spelled in lower case, a value
    that is not a string or boolean, a repeated name) it gives up by raising
    :class:`_Bail`, and the caller takes the located path, which finds and
    reports every problem.  Nothing is located here, so no line numbers are
    computed for a file that loads.  Scopes with the same options share one
    :class:`Options` value (they are immutable).
    """

    def __init__(self) -> None:
        self.version = NEWEST_VERSION
        self.too_new: frozenset[str] = frozenset()
        self.compatibility: CompatVersion | None = None
        self.match_cache_size: int | None = None
        self.interned: dict[tuple[ScopeKind, tuple[tuple[str, object], ...]], Options] = {}

    def settings(self, data: Mapping[str, Any]) -> None:
        if "compatibility" in data:
            text = data["compatibility"]
            try:
                self.compatibility = CompatVersion.parse(text)
            except Exception:
                raise _Bail from None
        if "match_cache_size" in data:
            value = data["match_cache_size"]
            if type(value) is not int or value < 0:
                raise _Bail
            self.match_cache_size = value
        version = self.compatibility or NEWEST_VERSION
        self.too_new = frozenset(n for n, spec in OPTION_SPECS.items() if spec.since > version)

    def options(self, kind: ScopeKind, items: tuple[tuple[str, object], ...]) -> Options:
        # Callers have checked every value is a str or bool, so the key hashes and
        # 1 == True cannot make an integer hit a boolean's entry.
        key = (kind, items)
        found = self.interned.get(key)
        if found is not None:
            return found
        values: dict[str, object] = {}
        for name, value in items:
            spec = OPTION_SPECS.get(name)
            if (spec is None or type(value) not in _VALUE_TYPES or kind not in spec.scopes
                    or name in self.too_new):
                raise _Bail
            try:
                values[name] = spec.parse(value)
            except Exception:
                raise _Bail from None
        try:
            options = Options(**values)  # type: ignore[arg-type]
        except Exception:
            raise _Bail from None
        self.interned[key] = options
        return options

    def scope(self, kind: ScopeKind, table: object, child_keys: frozenset[str]
              ) -> tuple[str, Options, dict[str, object]]:
        if type(table) is not dict:
            raise _Bail
        name: object = None
        items: list[tuple[str, object]] = []
        children: dict[str, object] = {}
        for key, value in table.items():
            if key == "name":
                name = value
            elif key in child_keys:
                children[key] = value
            elif type(value) in _VALUE_TYPES:
                items.append((key, value))
            else:
                raise _Bail
        if type(name) is not str or not name or name != name.strip():
            raise _Bail
        return name, self.options(kind, tuple(items)), children

    def domains(self, value: object) -> tuple[DomainScope, ...]:
        if type(value) is not list:
            raise _Bail
        out: list[DomainScope | None] = []
        exact: set[str] = set()
        other: set[DomainName] = set()
        plain = _PLAIN_HOST.fullmatch
        # Plain host names (nearly all of a large file) are built together at the end by
        # trusted_exact_domains; their places in ``out`` wait as None.
        at: list[int] = []
        keys: list[str] = []
        texts: list[str] = []
        plain_options: list[Options] = []
        for table in value:
            name, options, _children = self.scope(ScopeKind.DOMAIN, table, frozenset())
            lower = name.lower()
            if len(lower) <= 253 and name.isascii() and plain(lower) and "xn--" not in lower:
                if lower in exact:
                    raise _Bail
                exact.add(lower)
                at.append(len(out))
                out.append(None)
                # A name already in lower case keeps one string object for key and text.
                keys.append(name if lower == name else lower)
                texts.append(name)
                plain_options.append(options)
                continue
            try:
                parsed = DomainName.parse(name)
            except Exception:
                raise _Bail from None
            if parsed.kind is _EXACT:
                if parsed.key in exact:
                    raise _Bail
                exact.add(parsed.key)
            else:
                if parsed in other:
                    raise _Bail
                other.add(parsed)
            out.append(trusted_domain(parsed, options))
        built = trusted_exact_domains(texts, plain_options, keys)
        if len(built) == len(out):
            return tuple(built)
        for index, scope in zip(at, built, strict=True):
            out[index] = scope
        return tuple(out)  # type: ignore[arg-type]

    def bindings(self, value: object, owners: set[str]) -> tuple[BindingScope, ...]:
        if type(value) is not list:
            raise _Bail
        out: list[BindingScope] = []
        for table in value:
            name, options, children = self.scope(ScopeKind.BINDING, table, _BINDING_CHILDREN)
            if name in owners:
                raise _Bail
            owners.add(name)
            domains = self.domains(children["domain"]) if "domain" in children else ()
            out.append(trusted_binding(name, options, domains))
        return tuple(out)

    def build(self, data: Mapping[str, Any]) -> Config:
        for key in data:
            if key not in _ROOT_KEYS:
                raise _Bail
        self.settings(data)
        options = Options()
        if "global" in data:
            table = data["global"]
            if type(table) is not dict:
                raise _Bail
            items = tuple(table.items())
            for _key, value in items:
                if type(value) not in _VALUE_TYPES:
                    raise _Bail
            options = self.options(ScopeKind.GLOBAL, items)
        domains = self.domains(data["domain"]) if "domain" in data else ()
        owners: set[str] = set()
        groups: list[BindingGroupScope] = []
        group_names: set[str] = set()
        if "binding_group" in data:
            value = data["binding_group"]
            if type(value) is not list:
                raise _Bail
            for table in value:
                name, g_options, children = self.scope(
                    ScopeKind.BINDING_GROUP, table, _GROUP_CHILDREN)
                if name in group_names:
                    raise _Bail
                group_names.add(name)
                g_domains = self.domains(children["domain"]) if "domain" in children else ()
                g_bindings = (self.bindings(children["binding"], owners)
                              if "binding" in children else ())
                groups.append(trusted_group(name, g_options, g_domains, g_bindings))
        bindings = self.bindings(data["binding"], owners) if "binding" in data else ()
        return trusted_config(options, domains, tuple(groups), bindings, self.compatibility,
                              self.match_cache_size)


_ROOT_KEYS: Final = frozenset({*_SETTINGS, "global", "domain", "binding_group", "binding"})
_GROUP_CHILDREN: Final = frozenset({"domain", "binding"})
_BINDING_CHILDREN: Final = frozenset({"domain"})


_DECODE_POS: Final = re.compile(r"\(at line (\d+), column (\d+)\)")


def top_level_lines(text: str) -> Callable[[str], int | None]:
    """The line of a top-level key or table of TOML ``text`` (read at the first call)."""
    found: list[Lines] = []

    def line_of(key: str) -> int | None:
        if not found:
            found.append(Lines(_without_bom(text)))
        return found[0].key((), key)

    return line_of


def parse_toml(text: str, filename: str = "<string>") -> dict[str, Any]:
    """The TOML document ``text`` (of ``filename``) as builtins, a leading byte order mark
    dropped: every file this package reads as TOML is parsed so, and whatever does not
    parse is a :class:`~tlspolicy.errors.ConfigSyntaxError` naming the file (and the
    line where the parser says), never another exception."""
    return _parse(_without_bom(text), filename)


def _parse(text: str, filename: str) -> dict[str, Any]:
    # tomli is the parser the standard library's tomllib was taken from, in wheels
    # compiled with mypyc: the same answers and messages, about twice as fast on a
    # configuration of a hundred thousand stanzas, whose start is mostly this parse.
    try:
        return tomli.loads(text)
    except RecursionError:
        # Arrays or inline tables nested thousands deep: the parser recurses per level.
        raise ConfigSyntaxError("not valid TOML: arrays or tables nested too deeply",
                                Location(file=filename)) from None
    except ValueError as exc:  # TOMLDecodeError, and int()'s 4,300-digit limit
        if not isinstance(exc, tomli.TOMLDecodeError):
            raise ConfigSyntaxError(
                f"not valid TOML: a number too large to read ({excerpt(str(exc))})",
                Location(file=filename)) from None
        pos = _DECODE_POS.search(str(exc))
        message = _DECODE_POS.sub("", str(exc)).strip()
        line = int(pos.group(1)) if pos else None
        if pos is None and message.endswith("(at end of document)"):
            # The problem is in the last line (an unfinished key, string or table).
            message = message.removesuffix("(at end of document)").strip()
            line = max(1, len(text.rstrip("\n").split("\n")))
            message += " (at the end of the file)"
        location = Location(file=filename, line=line,
                            column=int(pos.group(2)) if pos else None)
        raise ConfigSyntaxError(f"not valid TOML: {message}", location) from None


def _without_bom(text: str) -> str:
    # A leading byte order mark is dropped, as the ecelerity.conf reader does.
    return text[1:] if text.startswith("\ufeff") else text


def toml_to_raw(text: str, filename: str = "<string>") -> RawScope:
    """Parse TOML text into the neutral raw tree (layout errors raised together)."""
    text = _without_bom(text)
    return _data_to_raw(_parse(text, filename), text, filename)


def _data_to_raw(data: Mapping[str, Any], text: str, filename: str) -> RawScope:
    reader = _Reader(text, filename)
    raw = reader.root(data)
    ConfigErrors.raise_if_any(reader.errors)
    return raw


def loads_toml(text: str, filename: str = "<string>") -> Config:
    """Read a TOML configuration from text; every problem is reported at once.

    A leading byte order mark is ignored, as in ``ecelerity.conf``.
    An ``expires`` whose passing would weaken a decision, on a stanza that
    does not say ``expiry_weakens = true``, is an error here too
    (:class:`~tlspolicy.errors.ExpiryWeakensError`).
    """
    text = _without_bom(text)
    config = _check_expiry(_loads_toml(text, filename), text, filename)
    if config.floors:
        _check_floor_protocols(config, text, filename)
    return config


def _loads_toml(text: str, filename: str) -> Config:
    data = _parse(text, filename)
    try:
        return _FastReader().build(data)
    except _Bail:
        # Something to report (or an unusual spelling): the located path finds it.
        pass
    raw = _data_to_raw(data, text, filename)
    try:
        return build_config(raw)
    except ConfigErrors as many:
        raise ConfigErrors(e.located(Location(file=filename)) for e in many.errors) from None
    except ConfigError as one:
        raise one.located(Location(file=filename)) from None


def _check_expiry(config: Config, text: str, filename: str) -> Config:
    if not has_expiry(config):
        return config
    lines = _expiry_lines(config, Lines(text))
    errors = expiry_errors(config, line_of=lambda s: lines.get(id(s)))
    ConfigErrors.raise_if_any([e.located(Location(file=filename)) for e in errors])
    return config


def _check_floor_protocols(config: Config, text: str, filename: str) -> None:
    errors = floor_protocol_errors(config)
    if not errors:
        return
    lines = Lines(text)
    line_of = {floor_path(f.name.text): lines.key((("floor", i),), "tls_protocols")
               for i, f in enumerate(config.floors)}
    ConfigErrors.raise_if_any([
        e.located(Location(file=filename, line=line_of.get(e.location.scope or "")))
        for e in errors])


def _expiry_lines(config: Config, lines: Lines) -> dict[int, int | None]:
    """The line of each expiring stanza's ``expires`` key (TOML keeps file order)."""
    out: dict[int, int | None] = {}

    def add(stanzas: Sequence[DomainScope | FloorScope], parent: _Path, key: str) -> None:
        for i, stanza in enumerate(stanzas):
            if stanza.expires is not None:
                out[id(stanza)] = lines.key((*parent, (key, i)), "expires")

    add(config.domains, (), "domain")
    for gi, g in enumerate(config.binding_groups):
        add(g.domains, (("binding_group", gi),), "domain")
        for bi, b in enumerate(g.bindings):
            add(b.domains, (("binding_group", gi), ("binding", bi)), "domain")
    for bi, b in enumerate(config.bindings):
        add(b.domains, (("binding", bi),), "domain")
    add(config.floors, (), "floor")
    return out


def _stanza(d: DomainScope | FloorScope) -> dict[str, Any]:
    out: dict[str, Any] = {"name": d.name.text, **d.options.to_mapping()}
    if d.expires is not None:
        out["expires"] = d.expires
    if d.reason is not None:
        out["reason"] = d.reason
    if d.expiry_weakens:
        out["expiry_weakens"] = True
    return out


def _domains(domains: tuple[DomainScope, ...]) -> list[dict[str, Any]]:
    return [_stanza(d) for d in domains]


def _binding(b: BindingScope) -> dict[str, Any]:
    out: dict[str, Any] = {"name": b.name, **b.options.to_mapping()}
    if b.domains:
        out["domain"] = _domains(b.domains)
    return out


def config_to_toml(config: Config) -> dict[str, Any]:
    """The TOML document (as builtins) for a configuration."""
    doc: dict[str, Any] = {}
    if config.compatibility is not None:
        doc["compatibility"] = str(config.compatibility)
    if config.match_cache_size is not None:
        doc["match_cache_size"] = config.match_cache_size
    if not config.options.is_empty():
        doc["global"] = config.options.to_mapping()
    if config.domains:
        doc["domain"] = _domains(config.domains)
    if config.binding_groups:
        groups = []
        for g in config.binding_groups:
            item: dict[str, Any] = {"name": g.name, **g.options.to_mapping()}
            if g.domains:
                item["domain"] = _domains(g.domains)
            if g.bindings:
                item["binding"] = [_binding(b) for b in g.bindings]
            groups.append(item)
        doc["binding_group"] = groups
    if config.bindings:
        doc["binding"] = [_binding(b) for b in config.bindings]
    if config.floors:
        doc["floor"] = [_stanza(f) for f in config.floors]
    return doc


def _is_stanza_list(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _prefixed(text: str, prefix: str) -> str:
    # tomli-w writes table headers, and only them, at the start of a line with '['
    # (array items are indented, strings are one line); they get the parent's name.
    out = []
    for line in text.splitlines(keepends=True):
        if line.startswith("[["):
            line = f"[[{prefix}.{line[2:]}"
        elif line.startswith("["):
            line = f"[{prefix}.{line[1:]}"
        out.append(line)
    return "".join(out)


def dumps_toml(config: Config) -> str:
    """Render a configuration as TOML text that :func:`loads_toml` reads back equal.

    The file-level settings come first, then ``[global]``, then every top-level
    stanza as an array-of-tables entry (``[[domain]]``, ``[[binding_group]]``,
    ``[[binding]]``, ``[[floor]]``), in declaration order. tomli-w alone would write a
    short list of stanzas as an inline array of tables at the top of the file, before
    ``[global]``; nested lists (a group's domains) may stay inline under their stanza.
    """
    doc = config_to_toml(config)
    head = {k: v for k, v in doc.items() if not _is_stanza_list(v)}
    parts = [tomli_w.dumps(head)] if head else []
    for key, value in doc.items():
        if key in head:
            continue
        for item in value:
            body = _prefixed(tomli_w.dumps(item), key)
            parts.append(f"[[{key}]]\n{body}")
    return "\n".join(part if part.endswith("\n") else part + "\n" for part in parts)
