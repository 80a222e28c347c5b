"""Export to KumoMTA's traffic shaping TOML (``shaping.toml``) [K].

KumoMTA decides TLS per egress path with ``enable_tls`` (``Disabled``,
``OpportunisticInsecure``, ``Opportunistic``, ``RequiredInsecure``,
``Required``), ``enable_dane``, ``enable_mta_sts`` and
``opportunistic_tls_reconnect_on_failed_handshake``, set per destination
domain block (``["partner.example"]``) and per egress source inside it
(``["partner.example".sources."bulk-1"]``).  A tlspolicy binding is an egress
source; the ``default`` binding supplies the block itself.

Every value is the resolver's effective value (floors applied), so the file
is never weaker than the policy where KumoMTA can say the same thing.  What
it cannot say is listed as a :class:`KumoNote` per entry: a CA bundle,
client certificate, cipher or protocol list, ``tls_verify = optional``'s
reports, ``ca`` without the host-name check, expiry.

What KumoMTA would apply differently for whole sets of domains is refused
with a :class:`KumoExportError` naming the stanza or binding, unless the
caller accepts the loss (``accept_loss=True``, ``convert --accept-loss``):
a regex domain stanza (shaping blocks name domains); a binding whose values
for domains no block names differ from the ``default`` binding's (KumoMTA
merges ``sources`` from a domain's or site's block, never from the
``default`` block); a stanza or floor for the domain ``default`` (that block
is KumoMTA's block for every domain without its own).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import attrs
import tomli_w

from ..errors import ConfigError, ConfigErrors, Location
from ..floors import FloorExportError, plan_floor_writes
from ..names import DomainKind
from ..options import UNSET, CompatVersion, ScopeKind, Tls, TlsVerify
from ..resolver import Resolver
from ..scopes import DEFAULT_NAME, Config, FloorScope
from ..scopes.models import floor_path, scope_path
from ..scopes.stanzas import iter_stanzas

__all__ = ["KumoExportError", "KumoExportErrors", "KumoNote", "dumps_kumomta",
           "kumomta_shaping"]

DEFAULT_BLOCK: Final = "default"
"""KumoMTA's block for every domain without its own."""

_FALLBACK_SINCE: Final = CompatVersion((4, 1))
_RECONNECT: Final = "opportunistic_tls_reconnect_on_failed_handshake"
_ACCEPT: Final = "accept the loss (--accept-loss) to write the file without it"


class KumoExportError(ConfigError):
    """Part of the policy KumoMTA shaping cannot apply; refused unless the loss is accepted."""


class KumoExportErrors(ConfigErrors, KumoExportError):
    """Every :class:`KumoExportError` of one export, named at once."""


@attrs.frozen(slots=True)
class KumoNote:
    """Something of the policy one shaping entry cannot express."""

    block: str
    source: str | None
    option: str
    message: str

    def describe(self) -> str:
        """One line: ``["block".sources."src"]: option 'x': message``."""
        where = f'["{self.block}"]' + (f'.sources."{self.source}"' if self.source else "")
        return f"{where}: option {self.option!r}: {self.message}"


def _entry(values: Mapping[str, object], fallback_exists: bool
           ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    tls, verify = values["tls"], values["tls_verify"]
    assert isinstance(tls, Tls) and isinstance(verify, TlsVerify)
    notes: list[tuple[str, str]] = []
    checked = verify in (TlsVerify.CA, TlsVerify.HOST)
    if tls is Tls.NO:
        mode = "Disabled"
    elif tls is Tls.IFAVAILABLE:
        mode = "Opportunistic" if checked else "OpportunisticInsecure"
    else:
        mode = "Required" if checked else "RequiredInsecure"
    out: dict[str, Any] = {"enable_tls": mode}
    if tls is not Tls.NO:
        if verify is TlsVerify.CA:
            notes.append(("tls_verify", "'ca' exported as a validated mode: KumoMTA also "
                                        "checks the host name (stricter)"))
        if verify is TlsVerify.OPTIONAL:
            notes.append(("tls_verify", "'optional' exported as an Insecure mode: KumoMTA "
                                        "does not report certificate problems"))
    if tls is Tls.IFAVAILABLE:
        fallback = bool(values["tls_ifavailable_fallback"]) and fallback_exists
        out[_RECONNECT] = fallback
    out["enable_mta_sts"] = bool(values["use_mta_sts"]) and bool(values["enable_mta_sts"])
    out["enable_dane"] = bool(values["use_dane"]) and bool(values["enable_dane"])
    for option, what in (("tls_ca", "CA bundle"), ("tls_certificate", "client certificate"),
                         ("tls_key", "client key"), ("tls_ciphers", "cipher list"),
                         ("tlsv13_ciphersuites", "TLS 1.3 suites")):
        if values[option] is not UNSET and values[option] is not None:
            notes.append((option, f"{what} {values[option]!s} not exported (set it in the "
                                  "egress source or make_egress_path by hand)"))
    protocols = values["tls_protocols"]
    if str(protocols).replace(" ", "") not in ("+ALL", "ALL"):
        notes.append(("tls_protocols", f"{protocols!s} not exported: shaping entries have no "
                                       "protocol list"))
    return out, notes


def kumomta_shaping(config: Config, *, accept_loss: bool = False
                    ) -> tuple[dict[str, Any], tuple[KumoNote, ...]]:
    """The shaping document (as builtins) for ``config`` and what it cannot carry.

    One block per exact or IP-literal name the configuration knows (stanzas
    and exact floors), with ``mx_rollup = false`` (the policy is per domain,
    not per MX site), and ``default``; inside each named block, a ``sources``
    entry for every binding whose values differ from the ``default`` binding's.
    Raises :class:`~tlspolicy.floors.FloorExportError` for a regex floor that
    would have to raise names no block names, and :class:`KumoExportError`
    (:class:`KumoExportErrors` for several) for what KumoMTA would apply
    differently (see the module docs) unless ``accept_loss``, which writes the
    file without it and lists each such loss as a note.
    """
    plan = plan_floor_writes(config, what="KumoMTA shaping")
    if plan.regex:
        binding, writes = next(iter(plan.regex.items()))
        name = writes[0][0]
        raise FloorExportError(
            f"KumoMTA shaping has no regex domain blocks, so this floor cannot raise the "
            f"names it matches through binding {binding!r}; name the domains in exact "
            "floors", Location(scope=floor_path(name.text)))
    resolver = Resolver(config, decision_cache_size=0)
    fallback_exists = config.effective_compatibility >= _FALLBACK_SINCE
    bindings = [DEFAULT_NAME, *(b for b in resolver.bindings if b != DEFAULT_NAME)]
    names: list[str] = []
    notes: list[KumoNote] = []
    losses: list[KumoExportError] = []
    def lose(path: str, error: str, note: str) -> None:
        # Refused, or with the loss accepted left out with a note.
        losses.append(KumoExportError(error, Location(scope=path)))
        notes.append(KumoNote(DEFAULT_BLOCK, None, "domain", note))

    for path, stanza in iter_stanzas(config):
        if stanza.name.kind is DomainKind.REGEX:
            # A regex floor that needs writing was refused above; one the chain
            # already meets everywhere loses nothing.
            if not stanza.options.is_empty() and not isinstance(stanza, FloorScope):
                lose(path, "KumoMTA shaping blocks name domains, so every name this regex "
                     "stanza matches that no block names would get the default block's "
                     f"values; name those domains in exact stanzas, or {_ACCEPT}",
                     f"regex stanza {stanza.name.text} ({path}) not exported: shaping "
                     "blocks name domains; names it matches get their block's or the "
                     "default's values")
            continue
        if stanza.name.key == DEFAULT_BLOCK:
            lose(path, f'KumoMTA reads the block "{DEFAULT_BLOCK}" as the block for every '
                 f"domain without its own, so the domain {DEFAULT_BLOCK!r} cannot have a "
                 f"block; {_ACCEPT}",
                 f'{path} not exported: the block "{DEFAULT_BLOCK}" is KumoMTA\'s block for '
                 "every domain without its own; the domain gets the default block's values")
            continue
        if stanza.name.key not in names:
            names.append(stanza.name.key)
    doc: dict[str, Any] = {}
    # The default block: what a name no stanza (exact or regex) or floor names gets.
    bare = Resolver(_without_domains(config), decision_cache_size=0)
    for block in (DEFAULT_BLOCK, *names):
        entries: dict[str, dict[str, Any]] = {}
        for binding in bindings:
            if block == DEFAULT_BLOCK:
                values, _sources = bare.effective("unnamed.invalid", binding)
            else:
                values, _sources = resolver.effective(block, binding)
            entry, found = _entry(values, fallback_exists)
            entries[binding] = entry
            source = None if binding == DEFAULT_NAME else binding
            notes.extend(KumoNote(block, source, o, m) for o, m in found)
        base = entries[DEFAULT_NAME]
        table: dict[str, Any] = {} if block == DEFAULT_BLOCK else {"mx_rollup": False}
        table.update(base)
        sources = {b: {k: v for k, v in e.items() if base.get(k) != v}
                   for b, e in entries.items() if b != DEFAULT_NAME}
        # A key the source entry lacks but the block has (reconnect only applies to
        # Opportunistic modes) keeps the block's value, which then does not apply.
        sources = {b: e for b, e in sources.items() if e}
        if block == DEFAULT_BLOCK:
            # KumoMTA merges sources from the site's and the domain's block only: here
            # they would look as if they applied and never do.
            for binding, wanted in sources.items():
                differs = ", ".join(f"{k} = {_show(base.get(k))} instead of {_show(v)}"
                                    for k, v in wanted.items())
                losses.append(KumoExportError(
                    "KumoMTA applies egress-source entries from a domain's or site's block, "
                    "never from the default block, so mail through this binding to a domain "
                    f"no block names would get {differs}; name those domains in stanzas "
                    f"(each block carries the binding), or {_ACCEPT}",
                    Location(scope=_binding_path(config, binding))))
                notes.append(KumoNote(block, binding, "sources",
                                      "not written: KumoMTA applies no egress-source entry in "
                                      "the default block; mail through this binding to a "
                                      f"domain no block names gets {differs}"))
            sources = {}
        else:
            # (The default block has no domain stanza or floor: nothing in it expires.)
            notes.extend(_expiry_notes(config, resolver, block, bindings, sources))
        if sources:
            table["sources"] = sources
        doc[block] = table
    if losses and not accept_loss:
        KumoExportErrors.raise_if_any(losses)
    return doc, tuple(_dedupe(notes))


def _expiry_notes(config: Config, resolver: Resolver, block: str, bindings: list[str],
                  sources: Mapping[str, object]) -> list[KumoNote]:
    """A note for each expiring stanza or floor that shapes one of ``block``'s entries.

    A binding without its own ``sources`` entry sends with the block's values, so
    its note is the block's.
    """
    expiring = [(p, s) for p, s in iter_stanzas(config)
                if s.expires is not None and s.name.matches(block)]
    notes: list[KumoNote] = []
    if not expiring:
        return notes
    for binding in bindings:
        _values, used_by = resolver.effective(block, binding)
        used = {str(s.scope) for s in used_by.values()}
        source = binding if binding in sources else None
        for path, stanza in expiring:
            assert stanza.expires is not None
            if any(path == u or (path.startswith("floor ") and path in u) for u in used):
                notes.append(KumoNote(block, source, "expires",
                                      f"{path} expires {stanza.expires.isoformat()}: shaping "
                                      "files cannot carry expiry; regenerate the file then"))
    return notes


def _show(value: object) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    return f'"{value}"'


def _binding_path(config: Config, name: str) -> str:
    for group in config.binding_groups:
        if any(b.name == name for b in group.bindings):
            return scope_path((ScopeKind.BINDING_GROUP, group.name), (ScopeKind.BINDING, name))
    return scope_path((ScopeKind.BINDING, name))


def _without_domains(config: Config) -> Config:
    groups = tuple(attrs.evolve(g, domains=(), bindings=tuple(
        attrs.evolve(b, domains=()) for b in g.bindings)) for g in config.binding_groups)
    return attrs.evolve(config, domains=(), binding_groups=groups, floors=(),
                        bindings=tuple(attrs.evolve(b, domains=()) for b in config.bindings))


def _dedupe(notes: list[KumoNote]) -> list[KumoNote]:
    seen: set[KumoNote] = set()
    out = []
    for note in notes:
        if note not in seen:
            seen.add(note)
            out.append(note)
    return out


def dumps_kumomta(config: Config, *, accept_loss: bool = False) -> str:
    """The shaping TOML text, headed by a comment; the notes as comments too.

    Raises as :func:`kumomta_shaping` does.
    """
    doc, notes = kumomta_shaping(config, accept_loss=accept_loss)
    head = ["# KumoMTA traffic shaping written by tlspolicy (enable_tls, enable_dane,",
            "# enable_mta_sts per destination and egress source).",
            *(f"# not expressed: {n.describe()}" for n in notes), ""]
    return "\n".join(head) + "\n" + tomli_w.dumps(doc)
