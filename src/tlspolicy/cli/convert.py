"""``tlspolicy convert``: write a configuration as TOML, ecelerity.conf or Postfix tables.

A Postfix policy table belongs to one transport, and a binding is a transport,
so ``--to postfix`` writes one binding's table (``--binding``) or one table
per binding into a directory (``--output-dir``); it never mixes bindings in
one stream, where their keys would repeat.
"""

from __future__ import annotations

import argparse
import os
import sys
import unicodedata
from collections import Counter
from collections.abc import Sequence
from typing import Any, TextIO

from ..formats.ecelerity import dumps_ecelerity, ecelerity_export_losses
from ..formats.kumomta import KumoExportError, dumps_kumomta, kumomta_shaping
from ..formats.toml import dumps_toml
from ..postfix.levels import PostfixWarning
from ..postfix.tables import (
    PCRE_LOSS,
    EntryKind,
    postfix_entries,
    render_pcre_table,
    render_policy_table,
)
from ..resolver import Resolver
from ..scopes import Config, config_at
from ._common import (
    EXIT_FOUND,
    UsageError,
    add_binding,
    add_config_files,
    evaluation_time,
    load_configuration,
    print_errors,
    warn,
)

__all__ = ["register", "summarise_losses"]


class ConversionLoss(Exception):
    """The conversion would leave out part of the policy and was not told it may."""


def _cmd_convert(args: argparse.Namespace) -> int:
    config = load_configuration(args)
    out = sys.stdout
    if args.to != "postfix":
        for flag in ("binding", "output_dir", "pcre_output"):
            if getattr(args, flag):
                raise UsageError(f"--{flag.replace('_', '-')} applies to --to postfix only")
    if args.accept_loss and args.to not in ("postfix", "kumomta"):
        raise UsageError("--accept-loss applies to --to postfix and --to kumomta only")
    if args.to != "toml":
        # These formats cannot carry expiry: write the policy in force now, so an
        # expired stanza is never revived (each remaining expiry gets a loss note).
        config = config_at(config, evaluation_time(args))
    if args.to == "toml":
        out.write(dumps_toml(config))
    elif args.to == "kumomta":
        try:
            text = dumps_kumomta(config, accept_loss=args.accept_loss)
        except KumoExportError as exc:
            # Nothing is written: KumoMTA would apply a different policy to the
            # domains concerned (each error names its stanza or binding).
            print_errors(exc)
            return EXIT_FOUND
        out.write(text)
        for note in kumomta_shaping(config, accept_loss=True)[1]:
            warn(note.describe())
    elif args.to == "ecelerity":
        out.write(dumps_ecelerity(config))
        for loss in ecelerity_export_losses(config):
            warn(str(loss))
    else:
        try:
            _postfix(config, args, out)
        except ConversionLoss as exc:
            sys.stderr.write(f"tlspolicy: error: {exc}\n")
            return EXIT_FOUND
    return 0


def _file_name(binding: str) -> str:
    # The binding name becomes a file name; one that would leave the directory, or
    # hide, is refused rather than rewritten (two bindings must never share a file).
    if (not binding or binding.startswith(".") or "/" in binding or "\\" in binding
            or any(unicodedata.category(c) == "Cc" for c in binding)):
        raise UsageError(f"binding {binding!r} cannot be a file name; write it on its own "
                         "with --binding")
    return binding


def _postfix(config: Config, args: argparse.Namespace, out: TextIO) -> None:
    every = list(Resolver(config).bindings)
    if args.output_dir and args.pcre_output:
        raise UsageError("--pcre-output is for one binding on standard output; with "
                         "--output-dir each binding's regex entries go to BINDING.pcre there")
    if args.binding:
        names = [args.binding]
    elif args.output_dir or len(every) == 1:
        names = every
    else:
        raise UsageError(
            "a Postfix policy table is per transport: give --binding BINDING (one table on "
            "standard output) or --output-dir DIR (one table per binding); bindings: "
            + ", ".join(every))
    warnings: list[PostfixWarning] = []
    tables = {name: postfix_entries(config, name) for name in names}
    for _entries, found in tables.values():
        warnings += found
    unwritten = [w for w in warnings if w.code == PCRE_LOSS]
    if unwritten:
        where = ", ".join(f'binding "{w.binding}" > {w.key} ({w.source})' for w in unwritten)
        if not args.accept_loss:
            # Nothing is written: Postfix would match those patterns against other names.
            raise ConversionLoss(
                f"regex domain entries whose pattern Postfix's PCRE would read otherwise "
                f"(an upper-case letter, which a pcre table matches case-insensitively, or "
                f"syntax PCRE refuses) cannot be written ({where}); write the pattern in "
                "lower case with plain classes, or pass --accept-loss to write the tables "
                "without them")
        warn(f"regex domain entries left out (--accept-loss): {where}")
    if args.output_dir:
        # Every name is checked before anything is written.
        bases = {name: os.path.join(args.output_dir, _file_name(name)) for name in names}
        os.makedirs(args.output_dir, exist_ok=True)
        for name, base in bases.items():
            entries, _found = tables[name]
            _write(f"{base}.policy", render_policy_table(entries))
            written = [f"{base}.policy"]
            pcre = render_pcre_table(entries)
            if pcre:
                _write(f"{base}.pcre", pcre)
                written.append(f"{base}.pcre")
            out.write(f'binding "{name}": {", ".join(written)}\n')
    else:
        [name] = names
        entries, _found = tables[name]
        dropped = [e for e in entries if e.kind is EntryKind.REGEX]
        if dropped and not args.pcre_output:
            stanzas = ", ".join(e.source for e in dropped)
            if not args.accept_loss:
                # Nothing is written: a table without them would silently apply a weaker
                # policy (the binding's default) to every domain they match.
                raise ConversionLoss(
                    f'binding "{name}" has regex domain entries that a hash table cannot '
                    f"hold ({stanzas}); pass --pcre-output FILE to write them as a pcre "
                    "table, or --accept-loss to write the table without them")
            warn(f'binding "{name}": regex domain entries left out (--accept-loss): '
                 f"{stanzas}")
        out.write(render_policy_table(entries))
        if args.pcre_output:
            _write(args.pcre_output, render_pcre_table(entries))
    if warnings:
        sys.stderr.write(summarise_losses(warnings, verbose=args.verbose))


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def summarise_losses(warnings: Sequence[Any], *, verbose: bool = False) -> str:
    """What Postfix cannot express: one line per kind with its count, or every line.

    A kind is an option and what is lost about it; the count is how many table
    entries it concerns, across how many bindings.
    """
    if verbose:
        lines = [w.describe() for w in warnings]
        return "what Postfix cannot express:\n" + "".join(f"{line}\n" for line in lines)
    kinds: Counter[tuple[str, str]] = Counter((w.option, w.message) for w in warnings)
    bindings: dict[tuple[str, str], set[str]] = {}
    for w in warnings:
        bindings.setdefault((w.option, w.message), set()).add(w.binding)
    head = (f"what Postfix cannot express: {len(warnings)} note"
            f"{'s' if len(warnings) != 1 else ''} of {len(kinds)} kind"
            f"{'s' if len(kinds) != 1 else ''} (--verbose lists each entry):\n")
    lines = []
    for (option, message), count in kinds.most_common():
        spread = len(bindings[(option, message)])
        where = f"{count} entr{'ies' if count != 1 else 'y'}"
        if spread > 1:
            where += f" in {spread} bindings"
        lines.append(f"  {where}: option '{option}': {message}\n")
    return head + "".join(lines)


def register(sub: Any) -> None:
    """Add ``convert`` to the command line's subparsers."""
    convert = sub.add_parser(
        "convert", help="convert configuration files to TOML, ecelerity.conf, a Postfix "
                        "smtp_tls_policy_maps table or KumoMTA shaping TOML")
    add_config_files(convert)
    convert.add_argument("--to", required=True,
                         choices=("toml", "ecelerity", "postfix", "kumomta"),
                         help="output format: TOML, Momentum ecelerity.conf, a Postfix "
                              "smtp_tls_policy_maps table (one per binding), or KumoMTA "
                              "traffic shaping TOML")
    add_binding(convert, help="postfix: the binding (Postfix transport) whose table to write; "
                              "needed on standard output when there are several")
    convert.add_argument("--output-dir", metavar="DIR",
                         help="postfix: write one table per binding into DIR, BINDING.policy "
                              "(hash/lmdb source) and BINDING.pcre (regex entries, if any)")
    convert.add_argument("--pcre-output", metavar="FILE",
                         help="postfix, one binding: write its regex domain entries to FILE as "
                              "a pcre table")
    convert.add_argument("--accept-loss", action="store_true",
                         help="postfix: write the tables even though regex domain entries "
                              "are left out: all of them on standard output without "
                              "--pcre-output, and those whose pattern can match an "
                              "upper-case letter; kumomta: write the file without what "
                              "KumoMTA would apply differently (regex stanzas, bindings' "
                              "values for domains no block names); otherwise each is "
                              "refused: exit 1, nothing written")
    convert.add_argument("--verbose", "-v", action="store_true",
                         help="postfix: list every entry Postfix cannot express exactly, not "
                              "a summary by kind")
    convert.set_defaults(func=_cmd_convert)
