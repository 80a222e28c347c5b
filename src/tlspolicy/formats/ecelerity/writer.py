"""Writing a configuration as ``ecelerity.conf`` text that reads back as the same
configuration; what it cannot carry is listed and written as comments."""

from __future__ import annotations

import enum

from ...errors import (
    TlsPolicyError,
)
from ...floors import floor_comments, plan_floor_writes, written_config
from ...options import NEWEST_VERSION, OPTION_SPECS, Options
from ...scopes import BindingScope, Config, DomainScope
from ...scopes.models import DEFAULT_MATCH_CACHE_SIZE
from ...scopes.stanzas import iter_stanzas

# ------------------------------------------------------------------------- writer


class EcelerityExportError(TlsPolicyError):
    """A name or value that no ``ecelerity.conf`` string can carry so that it reads back."""


def _quote(text: str, what: str) -> str:
    """A quoted string that :func:`parse_ecelerity` reads back as exactly ``text``."""
    if len(text) >= 2 and text.startswith("/") and text.endswith("/"):
        # The reader keeps "/.../" strings as written (regex domains), so no
        # escapes are possible: pick a quote the text does not contain.
        if "\n" in text:
            raise EcelerityExportError(f"{what} {text!r} contains a line break")
        for quote in ('"', "'"):
            if quote not in text:
                return f"{quote}{text}{quote}"
        raise EcelerityExportError(
            f"{what} {text!r} contains both quote characters; a \"/.../\" string cannot "
            "escape them")
    out = ['"']
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _option_lines(options: Options, indent: str) -> list[str]:
    lines = []
    for name, value in options.items():
        raw = OPTION_SPECS[name].dump(value)
        if isinstance(raw, bool):
            shown = "true" if raw else "false"
        elif isinstance(value, enum.Enum):
            shown = str(raw)
        elif isinstance(raw, str):
            shown = _quote(raw, f"option {name!r} value")
        else:  # pragma: no cover - every option dumps to a bool or a string
            raise EcelerityExportError(f"option {name!r}: cannot write value {raw!r}")
        lines.append(f"{indent}{name} = {shown}")
    return lines


def _domain_lines(domains: tuple[DomainScope, ...], indent: str) -> list[str]:
    lines = []
    for d in domains:
        head = f"{indent}domain {_quote(d.name.text.strip(), 'domain name')} {{"
        body = _option_lines(d.options, indent + "  ")
        lines += [head, *body, f"{indent}}}"] if body else [head + " }"]
    return lines


def _binding_lines(bindings: tuple[BindingScope, ...], indent: str) -> list[str]:
    lines = []
    for b in bindings:
        body = _option_lines(b.options, indent + "  ") + _domain_lines(b.domains, indent + "  ")
        head = f"{indent}binding {_quote(b.name, 'binding name')} {{"
        lines += [head, *body, f"{indent}}}"] if body else [head + " }"]
    return lines


def ecelerity_export_losses(config: Config) -> tuple[str, ...]:
    """What :func:`dumps_ecelerity` cannot carry: ``compatibility``, ``match_cache_size``,
    and each stanza's ``expires``.

    The first two are tlspolicy settings, not Momentum options; the written
    file reads back with the defaults (the newest version, the default cache
    size), so a setting equal to its default loses nothing and is not listed.
    An expiring stanza is written without its expiry (one note each).
    """
    losses = []
    if config.compatibility is not None and config.compatibility != NEWEST_VERSION:
        losses.append(f"compatibility = {config.compatibility}: not an ecelerity.conf option; "
                      "the file reads back as the newest version")
    if config.match_cache_size not in (None, DEFAULT_MATCH_CACHE_SIZE):
        losses.append(f"match_cache_size = {config.match_cache_size}: not written; the file "
                      "reads back with the default cache size")

    for path, stanza in iter_stanzas(config):
        if stanza.expires is not None:
            losses.append(f"{path}: expires {stanza.expires.isoformat()}: ecelerity.conf "
                          "cannot carry expiry; the entry stays in force until removed by hand")
    return tuple(losses)


def dumps_ecelerity(config: Config) -> str:
    """Write a configuration as an ``ecelerity.conf`` snippet.

    Global options at top level, then global ``domain`` stanzas, ``binding_group``
    stanzas (with their domains and bindings) and ungrouped ``binding`` stanzas,
    in declaration order (which decides between regex domains).  Stanza
    arguments and string values are quoted; enumerations and booleans are
    bare words.  Read back with :func:`loads_ecelerity_config` it gives an
    equal configuration, except for the settings listed by
    :func:`ecelerity_export_losses`, which are written as comments.  Raises
    :class:`EcelerityExportError` for a name no quoted string can carry.
    """
    lines = ["# Outbound TLS policy written by tlspolicy."]
    lines += [f"# not written: {loss}" for loss in ecelerity_export_losses(config)]
    if config.floors:
        # ecelerity.conf has no floors: their raised values go into the bindings.

        writes = plan_floor_writes(config, what="ecelerity.conf")
        lines += floor_comments(config, writes)
        config = written_config(config, writes)
    lines += _option_lines(config.options, "")
    lines += _domain_lines(config.domains, "")
    for g in config.binding_groups:
        body = (_option_lines(g.options, "  ") + _domain_lines(g.domains, "  ")
                + _binding_lines(g.bindings, "  "))
        head = f"binding_group {_quote(g.name, 'binding_group name')} {{"
        lines += [head, *body, "}"] if body else [head + " }"]
    lines += _binding_lines(config.bindings, "")
    return "\n".join(lines) + "\n"
