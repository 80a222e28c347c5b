"""Postfix ``smtp_tls_policy_maps``: the policy of each binding as Postfix table answers.

A Momentum binding corresponds to a Postfix transport (a ``master.cf`` service
with its own ``-o smtp_tls_policy_maps=...``).  For every binding and domain
this module computes the Postfix policy answer (a security level plus
``name=value`` attributes) from the effective option values, and reports,
per entry, every part of the Momentum policy Postfix cannot express instead
of dropping it silently.

Level mapping (effective ``tls`` / ``tls_verify``; see the Postfix migration
guide for the reasoning):

============  =======================  ==========================================
tls           tls_verify               Postfix level
============  =======================  ==========================================
no            any                      ``none``
ifavailable   no, optional             ``may`` (``dane`` when DANE is on)
required      no, optional             ``encrypt``
ifavailable   ca, host                 ``verify match=hostname:nexthop`` (stricter)
required      ca, host                 ``verify match=hostname:nexthop``
============  =======================  ==========================================

``dane-only`` is never produced: no option requires DANE.  Where Postfix has
no exact equivalent the mapping is the *stricter* neighbour (it may defer
mail Momentum would deliver, never the reverse) and a :class:`PostfixWarning`
says so.

Two outputs: a static table (:func:`postfix_entries`, :func:`render_policy_table`,
:func:`render_pcre_table`, :func:`render_warnings`) and live answers for the
socketmap server (:class:`PolicyLookup`), which answers *every* domain with
its effective policy so Postfix never falls back to its own defaults.
"""

from __future__ import annotations

import contextlib
import enum
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

import attrs

from ..decision import Source
from ..errors import TlsPolicyError, UnknownBindingError
from ..floors import plan_floor_writes
from ..names import DomainKind, DomainName
from ..options import (
    OPTION_SPECS,
    CompatVersion,
    Options,
    ScopeKind,
    Tls,
    TlsProtocols,
    TlsVerify,
)
from ..options import TlsVersion as V
from ..resolver import Resolver
from ..scopes import (
    DEFAULT_NAME,
    BindingScope,
    Config,
    DomainScope,
    floor_path,
    iter_stanzas,
    scope_path,
)
from ..servers.socketmap import PostfixKeyError, SocketmapReply, parse_postfix_key

__all__ = [
    "DEFAULT_ANSWER_MEMO_SIZE",
    "VERIFY_MATCH",
    "PolicyLookup",
    "PostfixEntry",
    "PostfixLevel",
    "PostfixMappingError",
    "PostfixPolicy",
    "PostfixWarning",
    "map_values",
    "postfix_entries",
    "render_pcre_table",
    "render_policy_table",
    "render_warnings",
]

VERIFY_MATCH: Final = "hostname:nexthop"
"""``match=`` for verified levels: Momentum accepts the MX host name or the recipient domain."""

DEFAULT_ANSWER_MEMO_SIZE: Final = 65536
"""Answers :class:`PolicyLookup` keeps per map name and key (the resolver's memo size)."""

_FALLBACK_SINCE: Final = CompatVersion((4, 1))
# Longer keys are answered but not kept: a Postfix key is a domain and a port, so
# only a client sending junk has longer ones, and it should not fill the memo.
_MEMO_KEY_CHARS: Final = 300
_GRADES: Final = {"HIGH": "high", "MEDIUM": "medium", "LOW": "low", "EXPORT": "export",
                  "NULL": "null"}
_CIPHER_NAME: Final = re.compile(r"[A-Za-z0-9_+\-.]+")
# Values in a Postfix policy table may not hold white space or commas.
_BAD_VALUE: Final = re.compile(r"[\s,]")
_POSTFIX_VERSION_NAMES: Final = {
    V.SSLv2: "SSLv2", V.SSLv3: "SSLv3", V.TLSv1_0: "TLSv1", V.TLSv1_1: "TLSv1.1",
    V.TLSv1_2: "TLSv1.2", V.TLSv1_3: "TLSv1.3",
}
_ORDER: Final = tuple(V)
_MODERN: Final = frozenset({V.TLSv1_0, V.TLSv1_1, V.TLSv1_2, V.TLSv1_3})


class PostfixMappingError(TlsPolicyError):
    """A value that cannot be written into a Postfix policy answer at all.

    Raised (and answered ``PERM`` by the socketmap server, so Postfix defers)
    rather than writing an answer that would silently weaken the policy, e.g.
    a ``tls_ca`` path containing white space or a comma.
    """


class PostfixLevel(enum.Enum):
    """The Postfix TLS security levels this module produces."""

    NONE = "none"
    MAY = "may"
    ENCRYPT = "encrypt"
    DANE = "dane"
    VERIFY = "verify"
    SECURE = "secure"


@attrs.frozen(slots=True)
class PostfixPolicy:
    """One policy answer: a level and ``name=value`` attributes in output order."""

    level: PostfixLevel
    attributes: tuple[tuple[str, str], ...] = ()

    def text(self) -> str:
        """The answer as written in a table or sent in a socketmap ``OK`` reply."""
        return " ".join([self.level.value, *(f"{k}={v}" for k, v in self.attributes)])

    def __str__(self) -> str:
        return self.text()


@attrs.frozen(slots=True)
class PostfixWarning:
    """Something of the Momentum policy that one Postfix entry cannot express.

    ``key`` is the table key (a domain, an IP literal, ``/regex/``) or
    ``None`` for the binding's default (no entry matches); ``option`` names
    the option concerned and ``source`` the scope that set it.
    """

    binding: str
    key: str | None
    option: str
    message: str
    source: str | None = None

    def describe(self) -> str:
        """One line: ``binding "b" > key: option 'x' (from scope): message``."""
        where = f'binding "{self.binding}" > ' + (
            "default (no entry)" if self.key is None else self.key)
        origin = f" (set in {self.source})" if self.source else ""
        return f"{where}: option {self.option!r}{origin}: {self.message}"


class EntryKind(enum.Enum):
    """Which table an entry belongs to."""

    EXACT = "exact"
    REGEX = "regex"
    DEFAULT = "default"


@attrs.frozen(slots=True)
class PostfixEntry:
    """One table line for a binding: key, policy and the stanza it comes from."""

    binding: str
    kind: EntryKind
    key: str | None
    policy: PostfixPolicy
    source: str


# --------------------------------------------------------------------------- mapping


def _protocols(protocols: TlsProtocols) -> tuple[str | None, str | None]:
    """Postfix ``protocols=`` value (or ``None``: Postfix's default) and a loss note."""
    allowed = [v in protocols.versions for v in _ORDER]
    top = max(i for i, ok in enumerate(allowed) if ok)
    low = top
    while low > 0 and allowed[low - 1]:
        low -= 1
    note = None
    if any(allowed[:low]):
        dropped = ", ".join(v.value for v in _ORDER[:low] if allowed[_ORDER.index(v)])
        note = (f"the allowed versions {protocols.spec!r} are not contiguous; OpenSSL (and "
                f"Postfix) can only use a range, so only {_ORDER[low].value} to "
                f"{_ORDER[top].value} are allowed ({dropped} dropped; stricter)")
    versions = frozenset(_ORDER[low:top + 1])
    if versions >= _MODERN:
        # Postfix's default (>=TLSv1) is the same range; SSL versions are not
        # offered by current OpenSSL builds anyway.
        return None, note
    parts = [f">={_POSTFIX_VERSION_NAMES[_ORDER[low]]}"]
    if _ORDER[top] is not V.TLSv1_3:
        parts.append(f"<={_POSTFIX_VERSION_NAMES[_ORDER[top]]}")
    return ":".join(parts), note


def _ciphers(text: str) -> tuple[str, str | None] | None:
    """``(grade, exclude)`` when a cipher list is exactly a grade plus ``!`` exclusions."""
    tokens = [t.strip() for t in re.split(r"[:, ]+", text.strip()) if t.strip()]
    if not tokens:
        return None
    grade = _GRADES.get(tokens[0])
    if grade is None:
        return None
    excluded = []
    for token in tokens[1:]:
        if not token.startswith("!") or not _CIPHER_NAME.fullmatch(token[1:]):
            return None
        excluded.append(token[1:])
    return grade, (":".join(excluded) if excluded else None)


def _value(name: str, value: str) -> str:
    if not value or _BAD_VALUE.search(value):
        raise PostfixMappingError(
            f"{name} value {value!r} cannot be written in a Postfix policy answer "
            "(attribute values may not contain white space or commas)")
    return value


def map_values(
    values: Mapping[str, object],
    sources: Mapping[str, Source] | None = None,
    *,
    binding: str = DEFAULT_NAME,
    key: str | None = None,
    fallback_exists: bool = True,
) -> tuple[PostfixPolicy, tuple[PostfixWarning, ...]]:
    """Map effective option values (as :meth:`Resolver.effective` gives) to a policy.

    Returns the policy and a warning for every part Postfix cannot express.
    ``fallback_exists`` is false under compatibility 4.0, where a failed
    negotiation always defers.  Raises :class:`PostfixMappingError` for a
    value that cannot be written at all.
    """
    warnings: list[PostfixWarning] = []

    def warn(option: str, message: str) -> None:
        source = str(sources[option]) if sources is not None and option in sources else None
        warnings.append(PostfixWarning(binding, key, option, message, source))

    tls = values["tls"]
    verify = values["tls_verify"]
    assert isinstance(tls, Tls) and isinstance(verify, TlsVerify)
    fallback = bool(values["tls_ifavailable_fallback"]) and fallback_exists
    dane = bool(values["use_dane"]) and bool(values["enable_dane"])
    sts = bool(values["use_mta_sts"]) and bool(values["enable_mta_sts"])

    if tls is Tls.NO:
        level = PostfixLevel.NONE
    elif verify in (TlsVerify.NO, TlsVerify.OPTIONAL):
        level = PostfixLevel.MAY if tls is Tls.IFAVAILABLE else PostfixLevel.ENCRYPT
    else:
        level = PostfixLevel.VERIFY

    if tls is not Tls.NO:
        if verify is TlsVerify.OPTIONAL:
            warn("tls_verify", "'optional' (check and report, deliver anyway) has no Postfix "
                 "level: Postfix delivers without a certificate check and only logs "
                 "untrusted peers; nothing is reported")
        elif verify is TlsVerify.CA:
            warn("tls_verify", "'ca' (chain only, any name) has no Postfix level: mapped to "
                 f"verify match={VERIFY_MATCH}, which also checks the name (stricter)")
        if tls is Tls.IFAVAILABLE and level is PostfixLevel.VERIFY:
            warn("tls", "'ifavailable' with certificate verification has no Postfix level: "
                 "mapped to verify, which also defers when STARTTLS is not offered where "
                 "Momentum would deliver in plaintext (stricter)")
        if tls is Tls.IFAVAILABLE and level is PostfixLevel.MAY and not fallback:
            warn("tls_ifavailable_fallback", "false has no Postfix equivalent: at level may "
                 "Postfix retries in plaintext after a failed handshake where Momentum defers")

    if dane:
        if level in (PostfixLevel.NONE, PostfixLevel.MAY):
            if level is PostfixLevel.NONE:
                warn("use_dane", "mapped to level dane: without usable TLSA records Postfix "
                     "then uses opportunistic TLS (may) where Momentum sends in plaintext "
                     "(tls = no)")
            level = PostfixLevel.DANE
        else:
            warn("use_dane", f"Postfix has no level combining DANE with {level.value}; kept "
                 f"{level.value}, so TLSA records are not used for this destination")
    if sts:
        warn("use_mta_sts", "a Postfix policy answer cannot apply MTA-STS; this answer "
             "reflects the configuration only (combine it with an MTA-STS policy source)")

    attributes: list[tuple[str, str]] = []
    if level is PostfixLevel.VERIFY:
        attributes.append(("match", VERIFY_MATCH))
        ca = values["tls_ca"]
        if isinstance(ca, str):
            attributes.append(("tafile", _value("tafile", ca)))
    elif level is not PostfixLevel.NONE and isinstance(values["tls_ca"], str) \
            and verify is TlsVerify.OPTIONAL:
        warn("tls_ca", "Postfix takes a per-destination trust anchor (tafile) only at the "
             "verify and secure levels; not used at this level")

    if level is not PostfixLevel.NONE:
        ciphers = values["tls_ciphers"]
        if isinstance(ciphers, str):
            grade = _ciphers(ciphers)
            if grade is None:
                warn("tls_ciphers", f"{ciphers!r} is not a cipher grade (HIGH, MEDIUM, LOW, "
                     "EXPORT, NULL) with '!' exclusions; Postfix's policy table takes only a "
                     "grade and exclusions: not applied (set tls_high_cipherlist with -o in "
                     "this transport's master.cf entry and use ciphers=high)")
            else:
                attributes.append(("ciphers", grade[0]))
                if grade[1] is not None:
                    attributes.append(("exclude", grade[1]))
        protocols = values["tls_protocols"]
        assert isinstance(protocols, TlsProtocols)
        spec, note = _protocols(protocols)
        if spec is not None:
            attributes.append(("protocols", spec))
        if note is not None:
            warn("tls_protocols", note)
        if isinstance(values["tlsv13_ciphersuites"], str):
            warn("tlsv13_ciphersuites", "Postfix has no per-destination TLS 1.3 suite list: "
                 "not applied (OpenSSL's default suites are used)")
        for name in ("tls_certificate", "tls_key"):
            if isinstance(values[name], str):
                warn(name, "Postfix has no per-destination client certificate: not applied "
                     "(set smtp_tls_cert_file / smtp_tls_key_file with -o in this "
                     "transport's master.cf entry if the whole binding uses it)")
    return PostfixPolicy(level, tuple(attributes)), tuple(warnings)


# ------------------------------------------------------------------------ the table


def _binding_scopes(
    config: Config, binding: str, resolver: Resolver
) -> tuple[str, BindingScope | None, Options, Options,
           list[tuple[tuple[tuple[ScopeKind, str], ...], DomainScope]]]:
    """(group name, binding scope, binding options, group options, domain stanzas in
    chain order: the binding's, the group's, then global ones)."""
    group_name = resolver.binding_group_of(binding)
    groups = {g.name: g for g in config.binding_groups}
    group = groups.get(group_name)
    scope: BindingScope | None = None
    parent: tuple[tuple[ScopeKind, str], ...] = ()
    for g_name, b in config.iter_bindings():
        if b.name == binding:
            scope = b
            if g_name in groups and any(x is b for x in groups[g_name].bindings):
                parent = ((ScopeKind.BINDING_GROUP, g_name),)
    stanzas: list[tuple[tuple[tuple[ScopeKind, str], ...], DomainScope]] = []
    if scope is not None:
        b_path = (*parent, (ScopeKind.BINDING, binding))
        stanzas += [(b_path, d) for d in scope.domains]
    if group is not None:
        stanzas += [(((ScopeKind.BINDING_GROUP, group.name),), d) for d in group.domains]
    stanzas += [((), d) for d in config.domains]
    return (group_name, scope,
            scope.options if scope is not None else Options(),
            group.options if group is not None else Options(), stanzas)


def _chain(layers: Sequence[tuple[Options, str]]) -> tuple[dict[str, object], dict[str, Source]]:
    values: dict[str, object] = {}
    sources: dict[str, Source] = {}
    for options, path in layers:
        for name, value in options.items():
            if name not in values:
                values[name] = value
                sources[name] = Source(path)
    for name, spec in OPTION_SPECS.items():
        if name not in values:
            values[name] = spec.default
            sources[name] = Source("default")
    return values, sources


def postfix_entries(
    config: Config, binding: str | None = None
) -> tuple[tuple[PostfixEntry, ...], tuple[PostfixWarning, ...]]:
    """Every policy table entry of one binding (Postfix transport) and the losses.

    Entries: the binding's default (what applies to a domain no stanza names;
    put it in ``smtp_tls_security_level`` and friends, or rely on the
    socketmap), one exact entry per domain or IP-literal stanza that can
    apply through the binding (computed exactly, regex stanzas included), and
    one regex entry per regex stanza, computed as if that regex were the only
    stanza matching.  Raises :class:`~tlspolicy.errors.UnknownBindingError`
    for an undeclared binding.
    """
    name = DEFAULT_NAME if binding is None else binding
    resolver = Resolver(config, decision_cache_size=0)
    if name not in resolver.bindings:
        raise UnknownBindingError(
            f"unknown binding {name!r}; declared bindings: {', '.join(sorted(resolver.bindings))}")
    fallback_exists = config.effective_compatibility >= _FALLBACK_SINCE
    group_name, _scope, b_opts, g_opts, stanzas = _binding_scopes(config, name, resolver)
    binding_path = scope_path(*_group_prefix(config, name), (ScopeKind.BINDING, name))
    group_path = scope_path((ScopeKind.BINDING_GROUP, group_name))
    base = [(b_opts, binding_path), (g_opts, group_path)]
    entries: list[PostfixEntry] = []
    warnings: list[PostfixWarning] = []

    values, sources = _chain([*base, (config.options, "global")])
    policy, found = map_values(values, sources, binding=name, key=None,
                               fallback_exists=fallback_exists)
    entries.append(PostfixEntry(name, EntryKind.DEFAULT, None, policy, "no domain stanza"))
    warnings.extend(found)

    # Floors (SEMANTICS 7): exact names get the resolver's raised values below; a
    # regex floor is written as a pcre line ahead of the others, never weaker.
    floor_lines = _floor_regex_lines(config, name)
    for floor_name, floor_opts, floor_source in floor_lines:
        f_layers = [(floor_opts, floor_source)]
        own = [(p, d) for p, d in stanzas if d.name == floor_name]
        if own:
            o_path, o_stanza = own[0]
            o_spath = scope_path(*o_path, (ScopeKind.DOMAIN, o_stanza.name.text))
            if o_path and o_path[-1][0] in (ScopeKind.BINDING, ScopeKind.BINDING_GROUP):
                f_layers.append((o_stanza.options, o_spath))
                f_layers += base
            else:
                f_layers += base
                f_layers.append((o_stanza.options, o_spath))
        else:
            f_layers += base
        f_layers.append((config.options, "global"))
        values, sources = _chain(f_layers)
        f_key = f"/{floor_name.key}/"
        policy, found = map_values(values, sources, binding=name, key=f_key,
                                   fallback_exists=fallback_exists)
        entries.append(PostfixEntry(name, EntryKind.REGEX, f_key, policy, floor_source))
        for f in config.floors:
            if f.name == floor_name and f.expires is not None:
                warnings.append(_expiry_note(name, f_key, f.expires.isoformat(), floor_source))
        warnings.extend(found)
        warnings.extend(_regex_notes(name, f_key, floor_name, floor_source, 2))
    floor_patterns = {n for n, _o, _s in floor_lines}

    seen: set[str] = set()
    regexes: list[tuple[tuple[tuple[ScopeKind, str], ...], DomainScope]] = []
    floor_names = [((), DomainScope(f.name)) for f in config.floors
                   if f.name.kind is not DomainKind.REGEX]
    for path, stanza in [*stanzas, *floor_names]:
        if stanza.name.kind is DomainKind.REGEX:
            regexes.append((path, stanza))
            continue
        key = stanza.name.key
        if key in seen:
            continue
        seen.add(key)
        values, sources = resolver.effective(key, name)
        policy, found = map_values(values, sources, binding=name, key=key,
                                   fallback_exists=fallback_exists)
        origin = (scope_path(*path, (ScopeKind.DOMAIN, stanza.name.text))
                  if (path, stanza) in stanzas else floor_path(stanza.name.text))
        entries.append(PostfixEntry(name, EntryKind.EXACT, key, policy, origin))
        warnings.extend(_expiry_notes(config, name, key, resolver))
        warnings.extend(found)

    contributing = [r for r in regexes if not r[1].options.is_empty()]
    for path, stanza in contributing:
        if stanza.name in floor_patterns:
            continue  # written (raised) ahead of the other pcre lines above
        spath = scope_path(*path, (ScopeKind.DOMAIN, stanza.name.text))
        key = f"/{stanza.name.key}/"
        layers: list[tuple[Options, str]] = []
        container = path[-1][0] if path else None
        if container is ScopeKind.BINDING:
            layers.append((stanza.options, spath))
        if container is ScopeKind.BINDING_GROUP:
            layers.append((stanza.options, spath))
        layers += base
        if container is None:
            layers.append((stanza.options, spath))
        layers.append((config.options, "global"))
        values, sources = _chain(layers)
        policy, found = map_values(values, sources, binding=name, key=key,
                                   fallback_exists=fallback_exists)
        entries.append(PostfixEntry(name, EntryKind.REGEX, key, policy, spath))
        warnings.extend(found)
        if stanza.expires is not None:
            warnings.append(_expiry_note(name, key, stanza.expires.isoformat(), spath))
        warnings.extend(_regex_notes(name, key, stanza.name, spath, len(contributing)))
    return tuple(entries), tuple(warnings)


def _expiry_note(binding: str, key: str, when: str, source: str) -> PostfixWarning:
    return PostfixWarning(binding, key, "expires", f"expires {when}: Postfix tables cannot "
                          "carry expiry; the entry stays until the table is rebuilt (the "
                          "socketmap drops it on time)", source)


def _expiry_notes(config: Config, binding: str, key: str, resolver: Resolver
                  ) -> list[PostfixWarning]:
    """A loss note for each expiring stanza or floor that shapes an exact entry."""
    _values, sources = resolver.effective(key, binding)
    used = {str(s.scope) for s in sources.values()}
    notes = []
    for path, stanza in iter_stanzas(config):
        if stanza.expires is not None and stanza.name.matches(key) and any(
                path == u or (path.startswith("floor ") and path in u) for u in used):
            notes.append(_expiry_note(binding, key, stanza.expires.isoformat(), path))
    return notes


def _floor_regex_lines(config: Config, binding: str
                       ) -> list[tuple[DomainName, Options, str]]:
    """The regex floors to write for ``binding``: pattern, raised options, floor path.

    Raises :class:`~tlspolicy.floors.FloorExportError` for a regex floor that no
    constant answer can carry (see :mod:`tlspolicy.floors`).
    """
    if not any(f.name.kind is DomainKind.REGEX for f in config.floors):
        return []
    plan = plan_floor_writes(config, what="a Postfix pcre table")
    return [(n, o, floor_path(n.text)) for n, o in plan.regex.get(binding, ())]


def _group_prefix(config: Config, binding: str) -> tuple[tuple[ScopeKind, str], ...]:
    for g in config.binding_groups:
        if any(b.name == binding for b in g.bindings):
            return ((ScopeKind.BINDING_GROUP, g.name),)
    return ()


def _regex_notes(binding: str, key: str, name: DomainName, source: str,
                 count: int) -> list[PostfixWarning]:
    notes = []
    pattern = name.key
    if re.search(r"[\s/]", pattern):
        notes.append(PostfixWarning(binding, key, "domain", "the pattern holds white space or "
                                    "'/', which a Postfix pcre table line cannot carry: entry "
                                    "not written", source))
    if re.search(r"(?<!\\)[A-Z]", pattern):
        notes.append(PostfixWarning(binding, key, "domain", "the pattern has upper-case "
                                    "letters: tlspolicy matches it against the lower-case "
                                    "name, Postfix pcre tables match case-insensitively",
                                    source))
    if count > 1:
        notes.append(PostfixWarning(binding, key, "domain", "computed as if this were the only "
                                    "regex stanza matching: Postfix takes the first matching "
                                    "pcre line, tlspolicy merges matching stanzas option by "
                                    "option (use the socketmap for exact answers)", source))
    return notes


def _writable_regex(entry: PostfixEntry) -> bool:
    assert entry.key is not None
    return not re.search(r"[\s/]", entry.key[1:-1])


def render_policy_table(entries: Iterable[PostfixEntry]) -> str:
    """The exact entries as a ``hash:``/``lmdb:`` table source (``key<TAB>policy``).

    The binding's default is written as a comment naming the ``main.cf`` /
    ``master.cf`` setting it corresponds to; regex entries go to
    :func:`render_pcre_table`.
    """
    lines: list[str] = []
    for entry in entries:
        if entry.kind is EntryKind.DEFAULT:
            lines.append(f'# binding "{entry.binding}": domains without an entry get '
                         f"{entry.policy.text()!r}")
            lines.append(f"#   (smtp_tls_security_level = {entry.policy.level.value} for this "
                         "transport, or use the socketmap, which answers every domain)")
        elif entry.kind is EntryKind.EXACT:
            assert entry.key is not None
            lines.append(f"{entry.key}\t{entry.policy.text()}")
    return "\n".join(lines) + "\n"


def render_pcre_table(entries: Iterable[PostfixEntry]) -> str:
    """The regex entries as a ``pcre:`` table source, in precedence order.

    Entries whose pattern cannot be written (see the warnings) are left out.
    """
    lines = [f"/{e.key[1:-1]}/\t{e.policy.text()}" for e in entries  # type: ignore[index]
             if e.kind is EntryKind.REGEX and _writable_regex(e)]
    return "\n".join(lines) + ("\n" if lines else "")


def render_warnings(warnings: Iterable[PostfixWarning]) -> str:
    """One line per warning (see :meth:`PostfixWarning.describe`)."""
    return "".join(f"{w.describe()}\n" for w in warnings)


# ---------------------------------------------------------------------- socketmap


class PolicyLookup:
    """A socketmap lookup answering Postfix's ``smtp_tls_policy_maps`` queries.

    The map name selects the binding (``socketmap:inet:127.0.0.1:PORT:bulk-1``).
    Answers: ``OK <policy>`` for every domain, IP literal and next-hop form
    (``[host]``, ``[host]:port``, ``host:port``); ``NOTFOUND`` for the
    parent-domain form ``.example.com`` (never needed: the full name was
    already answered); ``PERM unknown binding ...`` for an undeclared binding;
    ``PERM malformed key ...`` for a key that is no next hop; ``PERM`` for a
    policy Postfix cannot be given (:class:`PostfixMappingError`).
    Unexpected errors propagate so the server answers ``TEMP``.
    """

    def __init__(self, resolver: Resolver, *, memo_size: int = DEFAULT_ANSWER_MEMO_SIZE) -> None:
        if isinstance(memo_size, bool) or not isinstance(memo_size, int) or memo_size < 0:
            raise ValueError(f"memo_size must be a whole number >= 0, got {memo_size!r}")
        self.resolver = resolver
        self._bindings = frozenset(resolver.bindings)
        self._fallback_exists = resolver.compatibility >= _FALLBACK_SINCE
        # Answers are pure functions of (map name, key) for one resolver, and a
        # reload builds a new PolicyLookup, so these memos never go stale.  Both are
        # bounded: answers by memo_size (oldest entry out first), replies per set of
        # effective values by the same bound (a configuration has few such sets).
        self._memo_size = memo_size
        self._answers: OrderedDict[tuple[str, str], SocketmapReply] = OrderedDict()
        self._by_values: dict[tuple[tuple[str, object], ...], SocketmapReply] = {}

    def policy(self, binding: str, domain: str) -> PostfixPolicy:
        """The policy for an already normalised ``domain`` through ``binding``."""
        values, sources = self.resolver.effective(domain, binding)
        policy, _warnings = map_values(values, sources, binding=binding, key=domain,
                                       fallback_exists=self._fallback_exists)
        return policy

    def __call__(self, map_name: str, key: str) -> SocketmapReply:
        memo_key = (map_name, key)
        reply = self._answers.get(memo_key)
        if reply is None:
            reply = self._answer(map_name, key)
            if self._memo_size and len(key) <= _MEMO_KEY_CHARS:
                answers = self._answers
                if len(answers) >= self._memo_size:
                    # Oldest first; a concurrent caller may have emptied it already.
                    with contextlib.suppress(KeyError):
                        answers.popitem(last=False)
                answers[memo_key] = reply
        return reply

    def _answer(self, map_name: str, key: str) -> SocketmapReply:
        if map_name not in self._bindings:
            return SocketmapReply.perm(
                f"unknown binding {map_name!r} (declared: {', '.join(sorted(self._bindings))})"
                [:1000])
        try:
            parsed = parse_postfix_key(key)
        except PostfixKeyError as exc:
            return SocketmapReply.perm(f"malformed key: {exc}")
        if parsed.parent:
            return SocketmapReply.notfound()
        values, sources = self.resolver.effective(parsed.domain, map_name)
        values_key = tuple(values.items())
        reply = self._by_values.get(values_key)
        if reply is not None:
            return reply
        try:
            policy, _warnings = map_values(values, sources, binding=map_name, key=parsed.domain,
                                           fallback_exists=self._fallback_exists)
            reply = SocketmapReply.ok(policy.text())
        except PostfixMappingError as exc:
            # The message names the offending value only, so it too depends on the
            # values alone; keep it out of the memo all the same (errors are rare).
            return SocketmapReply.perm(str(exc))
        if self._memo_size:
            if len(self._by_values) >= self._memo_size:
                self._by_values.clear()
            self._by_values[values_key] = reply
        return reply
